"""Downloading an image URL for ``--allow-urls``, without becoming a proxy into the server's own network.

Every address the host name resolves to must be public (not loopback, private, link-local, shared, reserved or
multicast); the connection then goes to one of those checked addresses (no second DNS lookup that could answer
differently), with the original ``Host`` header and TLS server name. Redirects are followed by hand, at most
``MAX_REDIRECTS``, each target checked the same way. The whole fetch has one deadline, and the body is counted
while it streams and cut at the size limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from otxlite.serve.errors import RequestError

MAX_REDIRECTS = 3


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable (IPv4-mapped IPv6 addresses are judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve_public(host: str, port: int, what: str) -> str:
    """A public address of ``host``; 403 if any of its addresses is not public (or it does not resolve: 422)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise RequestError(422, f"{what}: cannot resolve the host name {host!r} ({err.strerror}).") from err
    addresses = sorted({info[4][0] for info in infos})
    private = [a for a in addresses if not is_public_address(a)]
    if private or not addresses:
        raise RequestError(403, f"{what}: {host!r} resolves to {', '.join(private) or 'nothing'}, which is not a "
                                "public address; this server fetches only from public addresses.")
    return addresses[0]


async def fetch_url(url: str, max_bytes: int, timeout_s: float, what: str) -> bytes:
    """The body of ``url`` (http or https, public hosts only), at most ``max_bytes``, within ``timeout_s``."""
    try:
        return await asyncio.wait_for(_fetch(url, max_bytes, timeout_s, what), timeout_s)
    except asyncio.TimeoutError as err:
        raise RequestError(422, f"{what}: fetching {url} took longer than {timeout_s:g} s.") from err


async def _fetch(url: str, max_bytes: int, timeout_s: float, what: str) -> bytes:
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise RequestError(422, f"{what}: {url!r} is not an http(s) URL with a host.")
            if parts.username or parts.password:
                raise RequestError(422, f"{what}: URLs with credentials are not fetched.")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await resolve_public(parts.hostname, port, what)
            literal = f"[{address}]" if ":" in address else address
            pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
            extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
            request = client.build_request("GET", pinned, headers={"Host": parts.netloc}, extensions=extensions)
            try:
                response = await client.send(request, stream=True)
                try:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise RequestError(422, f"{what}: fetching {url} answered HTTP {response.status_code}.")
                    return await _read_capped(response, max_bytes, url, what)
                finally:
                    await response.aclose()
            except httpx.HTTPError as err:
                raise RequestError(422, f"{what}: fetching {url} failed ({type(err).__name__}: {err}).") from err
    raise RequestError(422, f"{what}: {url} redirects more than {MAX_REDIRECTS} times.")


async def _read_capped(response: httpx.Response, max_bytes: int, url: str, what: str) -> bytes:
    too_large = RequestError(413, f"{what}: {url} is larger than this server's limit of {max_bytes} bytes "
                                  "(--max-image-mb).")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)

"""Request and response models of the service; FastAPI turns them into the OpenAPI document."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class InputData(BaseModel):
    """AzureML's pandas "split" layout with one column: the images."""

    columns: list[Literal["image"]] = Field(default=["image"], min_length=1, max_length=1,
                                            description='Always `["image"]`.')
    index: Optional[list[Union[int, str]]] = Field(
        default=None, description="One key per image; each answer's `filename` is its key as a string "
        "(default: the image's position, `\"0\"`, `\"1\"`, ...).")
    data: list[str] = Field(min_length=1, description="The images, base64-encoded (JPEG, PNG, BMP, TIFF or WebP; a "
                            "`data:image/...;base64,` prefix is accepted), or http(s) URLs when the server runs "
                            "with `--allow-urls`.")


class ScoreRequest(BaseModel):
    """The body of `POST /score`."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"input_data": {"columns": ["image"], "index": [0], "data": ["iVBORw0KGgoAAAANSUhEUgAA..."]}}]})

    input_data: InputData


class Box(BaseModel):
    """A bounding box, normalized to [0, 1] by the image's width and height."""

    topX: float
    topY: float
    bottomX: float
    bottomY: float


class Instance(BaseModel):
    """One detected object."""

    box: Box
    label: str
    score: float = Field(description="Confidence in [0, 1].")
    polygon: list[list[float]] = Field(description="One flat `x, y, x, y, ...` list per connected part of the mask, "
                                       "normalized like `box`.")


class SaliencyMap(BaseModel):
    """One class's saliency map (`POST /score?explain=true`)."""

    label: str
    png: str = Field(description="Base64 grayscale PNG at the image's size: 255 x the highest score x mask of this "
                     "class's detections at each pixel (0 where it detected nothing).")


class ImagePrediction(BaseModel):
    """The answer for one image: an entry of `predictions.json` (AzureML AutoML instance segmentation)."""

    filename: str = Field(description="The image's `index` entry as a string, or its position.")
    boxes: list[Instance]
    saliency_maps: Optional[list[SaliencyMap]] = Field(
        default=None, description="Only with `explain=true`: one map per class, in the order of `/metadata` labels.")


class InputSize(BaseModel):
    """The size images are resized to before inference."""

    width: int
    height: int


class Limits(BaseModel):
    """What the service accepts."""

    max_images: int
    max_image_mb: float
    max_megapixels: float
    min_image_side: int
    max_body_bytes: int
    allow_urls: bool


class Metadata(BaseModel):
    """The model being served and the service's limits."""

    model: str = Field(description="File name of the IR.")
    labels: list[str]
    input_size: InputSize
    confidence_threshold: float = Field(description="Default threshold of `/score`.")
    precision: str = Field(description="FP32, FP16 or INT8.")
    otxlite_version: str = Field(description="The otxlite version that exported the IR.")
    template_id: str
    limits: Limits


class Health(BaseModel):
    """Readiness: `ready` once the model is compiled."""

    status: Literal["loading", "ready", "failed"]
    detail: Optional[str] = None
    model: Optional[str] = None
    model_sha256: Optional[str] = Field(None, description="SHA-256 of the served IR (.xml then .bin) as loaded.")


class ErrorDetail(BaseModel):
    """One validation problem: where it is (`loc`) and what is wrong (`msg`)."""

    loc: list[Union[int, str]]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a sentence saying what was wrong, plus per-field details for validation errors."""

    error: str
    detail: Optional[list[ErrorDetail]] = None

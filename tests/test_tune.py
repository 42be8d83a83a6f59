"""``otxlite tune``: search spaces from the templates, ``--param``/``--hpo`` and their checks, the Optuna pieces
(sampling, deadline, storage, promotion), and real studies: two templates within a budget, a killed study resumed,
two processes on one PostgreSQL study."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from conftest import slow_fixture
from otxlite.core.errors import OtxliteError
from otxlite.core.runs import LOCK_FILE, this_process
from otxlite.core.templates import apply_overrides, flatten_keys, list_templates, load_template_file
from otxlite.data.sample_data import make_sample_dataset
from otxlite.tuning.results import PROCESS, RUN_DIR, VALUES, best_trial, promote, trial_rows, write_trials_csv
from otxlite.tuning.space import TEMPLATE, as_params, build_spaces, first_params, suggest
from otxlite.tuning.study import fail_trials_of_ended_processes, open_storage, open_study

REPO = Path(__file__).resolve().parents[1]
LR = "learning_parameters.learning_rate"
BATCH = "learning_parameters.batch_size"
EPOCHS = "learning_parameters.num_iters"
# Tiny trials: 128 px, no workers, a short warmup, 2-4 epochs.
TINY = ["--param", "data.input_size=[128,128]", "--param", "learning_parameters.num_workers=0",
        "--param", "learning_parameters.learning_rate_warmup_iters=5", "--hpo", f"{EPOCHS}={{low: 2, high: 4}}"]


def test_every_template_searches_rate_epochs_batch_and_size_around_its_default():
    for template in list_templates():
        defaults = flatten_keys(template.hyper_parameters)
        rate = template.hpo[LR]
        assert rate.log and rate.low < defaults[LR] < rate.high, template.name
        assert {EPOCHS, BATCH, "data.input_size"} <= set(template.hpo), template.name
        assert defaults["data.input_size"] in [list(c) for c in template.hpo["data.input_size"].choices]
        assert ("data.augmentation" in template.hpo) == ("data.augmentation" in defaults), template.name


def test_param_fixes_a_dimension_in_the_templates_that_have_it():
    rtmdet, maskrcnn = build_spaces(["RTMDet-Ins-tiny", "MaskRCNN-EfficientNetB2B"],
                                    ["data.augmentation=plain", f"{BATCH}=2"], [])
    assert rtmdet.fixed == ("data.augmentation=plain", f"{BATCH}=2")
    assert maskrcnn.fixed == (f"{BATCH}=2",)  # Mask R-CNN has no augmentation choice
    assert "data.augmentation" not in rtmdet.dimensions and BATCH not in maskrcnn.dimensions
    assert maskrcnn.hyper_parameters["learning_parameters"]["batch_size"] == 2
    assert LR in rtmdet.dimensions and LR in maskrcnn.dimensions


def test_hpo_replaces_a_templates_range_and_keeps_the_others():
    (space,) = build_spaces(["SOLOv2"], [], [f"{LR}={{low: 0.001, high: 0.002, log: true}}",
                                            f"{EPOCHS}={{low: 2, high: 8, step: 2}}"])
    assert (space.dimensions[LR].low, space.dimensions[LR].high) == (0.001, 0.002)
    assert (space.dimensions[EPOCHS].high, space.dimensions[EPOCHS].step) == (8, 2)
    assert space.dimensions[BATCH] == space.template.hpo[BATCH]


@pytest.mark.parametrize(("param", "hpo", "message"), [
    ([], [f"{LR}={{low: 0.01, high: 0.001}}"], "low (0.01) must be below high (0.001)"),
    ([], [f"{LR}={{low: 0, high: 0.1, log: true}}"], "out of range: it must be > 0"),
    ([], [f"{BATCH}={{choices: []}}"], "non-empty list"),
    ([], [f"{BATCH}={{choices: [0, 2]}}"], f"--hpo {BATCH}=0 is out of range"),
    ([], [f"{BATCH}={{low: 1.5, high: 4}}"], "has the wrong type"),
    ([], ["data.input_size={choices: [[100, 100]]}"], "a multiple of 32"),
    ([], ["data.augmentation={low: 1, high: 2}"], "a range needs a numeric hyper-parameter"),
    ([], [f"{EPOCHS}=5"], "is not a search range"),
    ([], [f"{EPOCHS}={{low: 2, high: 10, step: 20}}"], "step (20) must be above 0 and at most high - low"),
    ([], ["learning_parameters.lr={low: 1, high: 2}"], "--hpo: unknown key 'learning_parameters.lr'"),
    ([f"{LR}=20"], [], f"--param {LR}=20.0 is out of range"),
    (["tiling.size=3"], [], "--param: unknown key 'tiling.size'. Similar keys: tiling.tile_size"),
])
def test_bad_ranges_and_values_are_one_paragraph_errors(param, hpo, message):
    with pytest.raises(OtxliteError) as error:
        build_spaces(["RTMDet-Ins-tiny"], param, hpo)
    assert message in str(error.value)


def test_a_template_is_given_once():
    with pytest.raises(OtxliteError, match="once"):
        build_spaces(["RTMDet-Ins-tiny", "rtmdet-ins-tiny"], [], [])


def test_a_template_with_a_bad_hpo_section_is_refused_when_loaded(tmp_path):
    source = REPO / "templates" / "instance_segmentation" / "rtmdet_ins_tiny.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(source.read_text().replace("num_iters: {low: 20, high: 200, step: 10}",
                                              "num_iters: {low: 0, high: 100}")
                   .replace("../../configs", str(source.parent.parent.parent / "configs")))
    with pytest.raises(OtxliteError, match=r"Template .*bad.yaml: hpo learning_parameters.num_iters=0 is out of range"):
        load_template_file(bad)


def test_suggested_trials_stay_in_the_space_and_are_valid_params():
    spaces = build_spaces(["RTMDet-Ins-tiny", "YOLACT-MobileNetV2"], [f"{BATCH}=2"], [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        space, values = suggest(trial, spaces)
        seen.add(space.template.name)
        for key, value in values.items():
            dim = space.dimensions[key]
            assert value in dim.choices if dim.choices else dim.low <= value <= dim.high
        applied = flatten_keys(apply_overrides(space.template.hyper_parameters, as_params(space, values),
                                               space.template.family.input_size_multiple))
        assert applied[BATCH] == 2 and all(applied[key] == value for key, value in values.items())
        study.tell(trial, 0.0)
    assert seen == {"RTMDet-Ins-tiny", "YOLACT-MobileNetV2"}


def test_a_study_continues_with_the_same_setup_and_refuses_another(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    open_study(storage, "s", {"A": {"fixed": [], "space": {}}}, []).add_trial(
        optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    assert len(open_study(storage, "s", {"A": {"fixed": [], "space": {}}}, []).trials) == 1
    with pytest.raises(OtxliteError, match="was started with other templates"):
        open_study(storage, "s", {"B": {"fixed": [], "space": {}}}, [])


def test_a_new_study_first_trains_each_template_s_recipe_at_the_cheapest_one_s_cost_once(tmp_path):
    """RTMDet-Ins-tiny's recipe as it comes (12 GFLOPs at 640 px); Mask R-CNN's 71 GFLOPs at 1024 px are too many
    beside it: its recipe comes at 320 px (7 GFLOPs; 512 px would be 18). Alone, Mask R-CNN's recipe comes whole."""
    spaces = build_spaces(["RTMDet-Ins-tiny", "MaskRCNN-EfficientNetB2B"], [],
                          [f"{EPOCHS}={{low: 2, high: 4}}"])  # the default epochs (100) lie outside: sampled
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    firsts = first_params(spaces)
    study = open_study(storage, "s", {"A": {}}, firsts)
    sizes = []
    for space in spaces:
        trial = study.ask()
        chosen, values = suggest(trial, spaces)
        assert chosen is space
        defaults = flatten_keys(space.hyper_parameters)
        assert {key: values[key] for key in (LR, BATCH)} == {key: defaults[key] for key in (LR, BATCH)}
        assert 2 <= values[EPOCHS] <= 4
        sizes.append(values["data.input_size"])
        study.tell(trial, 0.5)
    assert sizes == [[640, 640], [320, 320]]
    assert firsts[0]["RTMDet-Ins-tiny/data.augmentation"] == "auto"  # the recipe's own choice, as it comes
    assert len(open_study(storage, "s", {"A": {}}, firsts).get_trials(
        states=(optuna.trial.TrialState.WAITING,))) == 0
    alone = first_params(build_spaces(["MaskRCNN-EfficientNetB2B"], [], []))
    assert alone[0]["MaskRCNN-EfficientNetB2B/data.input_size"] == "[1024, 1024]"


def test_the_running_trials_of_ended_processes_here_are_failed_at_once(tmp_path):
    """Killed: failed without waiting for the heartbeats' grace; alive, or on another machine: left running."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    study = open_study(open_storage(f"sqlite:///{tmp_path / 'study.db'}"), "s", {"A": {}}, [])
    processes = [this_process(), {**this_process(), "pid": ended.pid}, {**this_process(), "host": "gpu-node-7",
                                                                          "pid": ended.pid}]
    for process in processes:
        study.ask().set_user_attr(PROCESS, process)
    fail_trials_of_ended_processes(study)
    assert [trial.state.name for trial in study.trials] == ["RUNNING", "FAIL", "RUNNING"]


def test_trials_are_compared_at_equal_seconds_of_training_whatever_their_epochs(tmp_path):
    """The recipe's curve sets each rung (30, 90, ... s): a trial behind it there is pruned, one level with or ahead of
    it goes on, though its epochs are 10x longer or shorter."""
    from types import SimpleNamespace

    from otxlite.training.config import MONITOR
    from otxlite.tuning.trial import TrialHook

    study = open_study(open_storage(f"sqlite:///{tmp_path / 'study.db'}"), "s", {"A": {}}, [])
    recipe = study.ask()
    for seconds, score in ((31, 0.2), (95, 0.5), (280, 0.7)):
        recipe.report(score, step=seconds)
    study.tell(recipe, 0.7)

    def validate(hook: TrialHook, seconds: float, score: float, epoch: int) -> None:
        hook.started = time.monotonic() - seconds
        hook.after_val_epoch(SimpleNamespace(epoch=epoch), {MONITOR: score})

    faster = TrialHook(study.ask())
    validate(faster, 32, 0.25, epoch=20)  # ahead at 30 s
    validate(faster, 100, 0.5, epoch=60)  # level at 90 s
    assert faster.trial.should_prune() is False and faster.step == 100
    slower = TrialHook(study.ask())
    validate(slower, 33, 0.25, epoch=2)  # level with the best at 30 s, though only 2 epochs in
    with pytest.raises(optuna.TrialPruned, match="after 97 s of training, at epoch 6"):
        validate(slower, 97, 0.3, epoch=6)  # behind the recipe's 0.5 at 90 s


def test_a_trial_is_compared_only_with_trials_of_its_own_template():
    """Mask R-CNN at 0 after 90 s goes on beside RTMDet-Ins at 0.5 (its curve starts later) and beside a Mask R-CNN
    trial at 0.006 (the same in hundredths), not beside one at 0.3."""
    study = open_study(open_storage("sqlite:///:memory:"), "s", {"A": {}}, [])
    templates = optuna.distributions.CategoricalDistribution(["RTMDet-Ins-tiny", "MaskRCNN-EfficientNetB2B"])

    def pruned(template: str, score: float) -> bool:
        """Whether a new trial of ``template`` reporting ``score`` at 31 and 95 s is pruned (as TrialHook asks)."""
        study.enqueue_trial({TEMPLATE: template})
        trial = study.ask({TEMPLATE: templates})
        for seconds in (31, 95):
            trial.report(score, step=seconds)
            if trial.should_prune():
                return True
        return False

    assert pruned("RTMDet-Ins-tiny", 0.5) is False
    assert pruned("MaskRCNN-EfficientNetB2B", 0.006) is False
    assert pruned("MaskRCNN-EfficientNetB2B", 0.0) is False
    assert pruned("MaskRCNN-EfficientNetB2B", 0.3) is False
    assert pruned("MaskRCNN-EfficientNetB2B", 0.001) is True


def test_an_unreachable_storage_is_one_paragraph_without_the_password():
    with pytest.raises(OtxliteError) as error:
        open_storage("postgresql://user:secret@127.0.0.1:1/db")
    assert "cannot open the study database" in str(error.value) and "secret" not in str(error.value)


def test_the_deadline_hook_stops_training_at_the_deadline_only_and_before_any_other_hook():
    from otxlite.training.hooks import BatchNormStatisticsHook
    from otxlite.tuning.trial import DeadlineHook

    DeadlineHook(time.time() + 60).before_train_iter(None, 0)
    for stop in (lambda hook: hook.before_train_iter(None, 0), lambda hook: hook.before_val_epoch(None),
                 lambda hook: hook.before_val_iter(None, 0)):
        with pytest.raises(optuna.TrialPruned, match="deadline"):
            stop(DeadlineHook(time.time() - 1))
    assert DeadlineHook.priority < BatchNormStatisticsHook.priority  # the BN pass before a validation is slow


def _scored_trial(study, value, state, run_dir):
    """A finished trial as Optuna records one (a pruned trial keeps its last reported value)."""
    distributions = {TEMPLATE: optuna.distributions.CategoricalDistribution(["A"]),
                     f"A/{LR}": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    study.add_trial(optuna.trial.create_trial(
        params={TEMPLATE: "A", f"A/{LR}": 1e-3}, distributions=distributions, state=state,
        value=value, intermediate_values={3: value} if value is not None else {},
        user_attrs={RUN_DIR: str(run_dir), VALUES: {LR: 1e-3, "data.input_size": [320, 320]}}))


def test_the_best_scored_trial_on_this_machine_is_promoted_whole(tmp_path):
    study = optuna.create_study(direction="maximize")
    runs = []
    for number, (value, state) in enumerate([(0.3, "COMPLETE"), (0.5, "PRUNED"), (0.6, "COMPLETE"), (None, "FAIL")]):
        run = tmp_path / "trials" / f"trial_{number}"
        if number != 2:  # trial 2 ran on another machine: its folder is not here
            (run / "models").mkdir(parents=True)
            (run / "models" / "weights.pth").write_text(str(number))
            (run / LOCK_FILE).write_text("{}")
        runs.append(run)
        _scored_trial(study, value, optuna.trial.TrialState[state], run)
    best = best_trial(study)
    assert best.number == 1
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "stale.txt").write_text("an older best")
    performance = promote(best, tmp_path, "s", "sqlite:///x")
    assert (tmp_path / "best" / "models" / "weights.pth").read_text() == "1"
    assert not (tmp_path / "best" / "stale.txt").exists() and not (tmp_path / "best" / LOCK_FILE).exists()
    written = json.loads((tmp_path / "performance.json").read_text())
    assert written == performance and written["template"] == "A"
    assert written["params"] == {LR: 1e-3, "data.input_size": [320, 320]}  # values as otxlite reads them
    assert written["mask_mAP"] == 0.5 and written["state"] == "PRUNED"
    write_trials_csv(trial_rows(study), tmp_path / "trials.csv")
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert [row["state"] for row in rows] == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL"]
    assert [row["mask_mAP"] for row in rows] == ["0.3", "0.5", "0.6", ""] and rows[0][LR] == "0.001"


@pytest.mark.parametrize(("templates", "options", "message"), [
    (["RTMDet-Ins-tiny"], {"time_budget": 0}, "--time-budget 0: give a positive number of seconds"),
    (["RTMDet-Ins-tiny"], {"time_budget": 60, "trials": 0}, "--trials 0: give at least 1"),
    (["RTMDet-Ins-tny"], {"time_budget": 60}, "Unknown template 'RTMDet-Ins-tny'. Did you mean RTMDet-Ins-tiny"),
    (["RTMDet-Ins-tiny"], {"time_budget": 60, "params": [f"{BATCH}=0"]}, f"--param {BATCH}=0 is out of range"),
    (["RTMDet-Ins-tiny"], {"time_budget": 60, "val_root": Path("/nonexistent")}, "--val-data-roots"),
    (["RTMDet-Ins-tiny"], {"time_budget": 60, "val_root": "images"}, "Cannot tell the dataset format"),
])
def test_bad_tune_input_stops_before_the_output_folder(tmp_path, templates, options, message):
    from otxlite.app.tune import tune

    data = make_sample_dataset(tmp_path / "data", num_train=1, num_val=1, size=64)
    if options.get("val_root") == "images":  # a folder of images without annotations
        options = {**options, "val_root": data / "images"}
    with pytest.raises(OtxliteError) as error:
        tune(templates, data, output=tmp_path / "out", **options)
    assert message in str(error.value) and not (tmp_path / "out").exists()


def otxlite(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, COLUMNS="200"))


def test_cli_refuses_an_unreachable_storage_before_making_the_output_folder(tmp_path):
    data = make_sample_dataset(tmp_path / "data", num_train=1, num_val=1, size=64)
    result = otxlite("tune", "RTMDet-Ins-tiny", "--train-data-roots", str(data), "--time-budget", "60",
                     "--storage", "postgresql://u:secret@127.0.0.1:1/db", "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.startswith("Error: --storage postgresql://u:***@127.0.0.1:1/db")
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


# --- real studies (slow) ---------------------------------------------------------------------------------------

def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@slow_fixture(scope="module")
def two_template_study(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """``otxlite tune RTMDet-Ins-tiny MaskRCNN-EfficientNetB2B`` with a 90 s budget: the wall time and the result."""
    out = tmp_path_factory.mktemp("tune") / "out"
    start = time.monotonic()
    result = otxlite("tune", "RTMDet-Ins-tiny", "MaskRCNN-EfficientNetB2B", "--train-data-roots", str(tiny_dataset),
                     "--time-budget", "90", "--no-pretrained", "-o", str(out), *TINY)
    return out, time.monotonic() - start, result


def test_two_templates_finish_inside_the_budget_and_the_best_model_exports(two_template_study, tmp_path):
    out, seconds, result = two_template_study
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert seconds <= 90 + 10, seconds  # the budget, plus starting Python and the CLI
    rows = read_rows(out)
    assert len(rows) >= 2 and {row["state"] for row in rows} <= {"COMPLETE", "PRUNED"}
    performance = json.loads((out / "performance.json").read_text())
    assert performance["template"] in ("RTMDet-Ins-tiny", "MaskRCNN-EfficientNetB2B")
    scored = [float(row["mask_mAP"]) for row in rows if row["mask_mAP"]]
    assert performance["mask_mAP"] == pytest.approx(max(scored), abs=1e-4)
    assert "Trials (" in result.stdout and "Tuning finished" in result.stdout
    assert (out / "plots" / "optimization_history.png").is_file() and (out / "plots" / "learning_curves.png").is_file()
    from otxlite.export.pipeline import export_openvino

    xml = export_openvino(out / "best" / "models" / "weights.pth", tmp_path / "ir")
    assert xml.is_file() and xml.with_suffix(".bin").stat().st_size > 0


@pytest.mark.slow
def test_a_killed_study_resumes_where_it_stopped(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "otxlite.cli", "tune", "RTMDet-Ins-tiny", "--train-data-roots", str(tiny_dataset),
               "--time-budget", "400", "--trials", "3", "--no-pretrained", "-o", str(out), *TINY]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (out / "trials.csv").is_file():  # written when the first trial ends
            assert first.poll() is None, "the first run ended before a trial finished"
            time.sleep(0.5)
        time.sleep(5)  # the second trial is training now
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    before = {trial.number: trial for trial in optuna.load_study(study_name="otxlite-tune", storage=storage).trials}
    finished = {n for n, trial in before.items() if trial.state.is_finished()}
    killed = {n for n, trial in before.items() if trial.state == optuna.trial.TrialState.RUNNING}
    assert finished and killed, {n: trial.state for n, trial in before.items()}

    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    after = {trial.number: trial for trial in optuna.load_study(study_name="otxlite-tune", storage=storage).trials}
    for number in finished:  # not rerun: the same trial, untouched
        assert after[number].state == before[number].state and after[number].value == before[number].value
        assert after[number].datetime_complete == before[number].datetime_complete
    assert all(after[number].state == optuna.trial.TrialState.FAIL for number in killed)  # its heartbeat stopped
    new = sorted(set(after) - set(before))
    assert new and new[0] == max(before) + 1  # numbering goes on
    assert sum(trial.state.name in ("COMPLETE", "PRUNED") for trial in after.values()) == 3
    rows = read_rows(out)
    assert [(int(row["trial"]), row["state"]) for row in rows] == [(n, after[n].state.name) for n in sorted(after)]
    performance = json.loads((out / "performance.json").read_text())
    assert (out / "best" / "models" / "weights.pth").is_file() and performance["trial"] in after
    assert not (out / LOCK_FILE).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@slow_fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own (``scripts/postgres_test_server.sh``, which installs Debian's package if it
    is missing); skipped, with the script's reason, only where none can be had."""
    folder = tempfile.mkdtemp(prefix="otxlite-pg-")
    script = REPO / "scripts" / "postgres_test_server.sh"
    started = subprocess.run(["bash", str(script), "start", folder, str(free_port())], capture_output=True,
                             text=True, timeout=900)
    if started.returncode == 3:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server: {started.stdout.strip()}")
    assert started.returncode == 0, started.stdout + started.stderr
    yield started.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", str(script), "stop", folder], check=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


def open_at_once(url: str, barrier, failures) -> None:
    """Open ``url``'s study storage the moment every other process is ready; record a failure's message."""
    barrier.wait()
    try:
        open_storage(url)
    except OtxliteError as err:
        failures.put(str(err))


def test_processes_starting_on_a_new_postgresql_database_at_once_all_open_it(postgres_url):
    """They race to create the tables and types: the losers' "already exists" errors are retried, not reported (CI
    met one: two ``tune`` processes on one new database, one refused)."""
    import multiprocessing

    import sqlalchemy

    context = multiprocessing.get_context("fork")
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    failures = context.Queue()
    for round_ in range(5):
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE race{round_}"))
        url = postgres_url.rsplit("/", 1)[0] + f"/race{round_}"
        barrier = context.Barrier(8)
        processes = [context.Process(target=open_at_once, args=(url, barrier, failures)) for _ in range(8)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [process.exitcode for process in processes] == [0] * 8
    admin.dispose()
    assert failures.empty(), failures.get()


def test_two_processes_share_one_postgresql_study(postgres_url, tiny_dataset, tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "otxlite.cli", "tune", "RTMDet-Ins-tiny", "--train-data-roots", str(tiny_dataset),
         "--time-budget", "300", "--trials", "4", "--storage", postgres_url, "--study", "shared", "--no-pretrained",
         "-o", str(out), *TINY], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for out in outs]
    logs = [process.communicate(timeout=900)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], logs
    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    assert sum(trial.state.name in ("COMPLETE", "PRUNED") for trial in trials) >= 4
    assert len({trial.number for trial in trials}) == len(trials)
    by_process = {out: [t for t in trials if Path(t.user_attrs[RUN_DIR]).parent.parent == out] for out in outs}
    assert all(by_process.values()), "each process ran trials of the shared study"
    for out, other in (outs, outs[::-1]):  # each one's table lists the other's trials too
        assert any(Path(row["run_dir"]).parent.parent == other for row in read_rows(out))
        assert json.loads((out / "performance.json").read_text())["storage"].startswith("postgresql://")

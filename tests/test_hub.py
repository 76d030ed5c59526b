"""Hub ids, for real: push and load through the huggingface_hub client against a stand-in Hub on loopback.

The other tests load models from folders; these go through the same client calls a user's
``from_pretrained("user/name")`` and ``--push_to_hub`` make (repo info, tree, HEAD/GET resolve,
create_repo, preupload, NDJSON commit), answered by :mod:`hub_stand_in` instead of huggingface.co.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comosvc.config import load_config
from comosvc.models import ComoSVC
from comosvc.models.folder import read_singer_tables

from conftest import SINGERS, TINY_CONFIG, save_tiny_models, tiny_stats
from hub_stand_in import HubStandIn

MODEL_FILES = {"config.json", "model.safetensors", "singers.json", "stats.json", "README.md"}
TEACHER, STUDENT = "user/comosvc-teacher", "user/comosvc-student"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """A running :class:`HubStandIn`, with huggingface_hub pointed at it for this test only.

    huggingface_hub reads its settings from the environment once, at import, into
    ``huggingface_hub.constants``: both are patched (and restored by monkeypatch). The cache and
    home are temporary, the token is fake, telemetry is off (no user-agent registry fetch). Xet is
    left on, as for a user (hf_xet comes with huggingface_hub): the stand-in never offers it, so
    files go as plain HTTP both ways. The client's shared HTTP session is dropped before and after,
    so none made with other settings is reused.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    with HubStandIn(tmp_path / "hub-store") as server:
        home = tmp_path / "hf-home"
        settings = {  # environment variable: (huggingface_hub.constants attribute, value)
            "HF_ENDPOINT": ("ENDPOINT", server.url),
            "HF_HUB_OFFLINE": ("HF_HUB_OFFLINE", False),
            "HF_HOME": ("HF_HOME", str(home)),
            "HF_HUB_CACHE": ("HF_HUB_CACHE", str(home / "hub")),
            "HF_TOKEN_PATH": ("HF_TOKEN_PATH", str(home / "token")),
            "HF_HUB_DISABLE_XET": ("HF_HUB_DISABLE_XET", False),
            "HF_HUB_DISABLE_TELEMETRY": ("HF_HUB_DISABLE_TELEMETRY", True),
        }
        for env, (attribute, value) in settings.items():
            monkeypatch.setenv(env, {True: "1", False: "0"}.get(value, value))
            monkeypatch.setattr(constants, attribute, value)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        monkeypatch.setenv("HF_TOKEN", "hf_stand_in_token")
        monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        close_session()
        try:
            yield server
        finally:
            close_session()
    assert not server.unhandled, f"the client made requests the stand-in does not implement: {server.unhandled}"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_overrides):
    """(teacher folder, student folder): the tiny random pair of tests/conftest.py."""
    return save_tiny_models(tmp_path_factory.mktemp("models"), load_config(TINY_CONFIG, overrides=tiny_overrides))


def student_of_hub_teacher(student_dir, folder):
    """The tiny student re-saved with ``distilled_from`` the teacher's Hub id, as distill.py --teacher user/... writes it."""
    student = ComoSVC.from_pretrained(student_dir)
    student.distilled_from = TEACHER
    student.save_pretrained(folder)
    return folder


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[key], sb[key]) for key in sa)


def requested(hub: HubStandIn, repo_id: str) -> list[tuple[str, str]]:
    return [(method, path) for method, path in hub.requests if repo_id in path]


def downloaded(hub: HubStandIn, repo_id: str) -> set[str]:
    """The files of ``repo_id`` the client GOT (at any revision: snapshot_download asks by commit id)."""
    prefix = f"/{repo_id}/resolve/"
    return {path[len(prefix):].split("/", 1)[1] for method, path in hub.requests if method == "GET" and path.startswith(prefix)}


@pytest.mark.parametrize("xet", [True, False], ids=["pipelined-upload", "single-commit-upload"])
def test_push_to_hub_then_from_pretrained_round_trips_the_model(hub, model_dirs, monkeypatch, xet):
    from huggingface_hub import ModelCard, constants, try_to_load_from_cache

    # upload_folder takes its pipelined path when hf_xet is installed, create_commit without it
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
    teacher = ComoSVC.from_pretrained(model_dirs[0])
    url = teacher.push_to_hub(TEACHER)  # the mixin's own method: create_repo + upload_folder
    assert f"{hub.url}/{TEACHER}/commit/" in str(url)
    assert ("POST", f"/api/models/{TEACHER}/commit/main") in hub.requests
    assert set(hub.files(TEACHER)) == MODEL_FILES

    loaded = ComoSVC.from_pretrained(TEACHER)
    assert_same_weights(loaded, teacher)
    assert (loaded.singers, loaded.stats, loaded.distilled, loaded.name_or_path) == (SINGERS, tiny_stats(), False, TEACHER)
    assert loaded.config.to_dict() == teacher.config.to_dict()
    assert downloaded(hub, TEACHER) == MODEL_FILES  # through the client, not read from a folder
    card_path = try_to_load_from_cache(TEACHER, "README.md")  # from_pretrained fetched the card too
    assert isinstance(card_path, str) and Path(card_path).read_bytes() == hub.files(TEACHER)["README.md"]
    card = ModelCard.load(TEACHER)
    assert card.data.library_name == "comosvc" and "teacher" in card.data.tags
    assert "diffusion teacher" in card.text and "`synth_alto` (id 0)" in card.text

    # a second push to the existing repo (create_repo answers 409) is a new commit that loading picks up
    teacher.training_steps = 1234
    teacher.push_to_hub(TEACHER)
    assert ComoSVC.from_pretrained(TEACHER).training_steps == 1234


def test_pipeline_of_a_hub_student_loads_its_teacher_from_the_hub(hub, model_dirs, tmp_path):
    from comosvc.pipeline import ConversionPipeline
    from comosvc.vocoders import GRIFFINLIM

    hub.add_repo(TEACHER, model_dirs[0])
    hub.add_repo(STUDENT, student_of_hub_teacher(model_dirs[1], tmp_path / "student"))

    pipe = ConversionPipeline.from_pretrained(STUDENT, vocoder=GRIFFINLIM, device="cpu")
    assert pipe.model.distilled and pipe.model.name_or_path == STUDENT
    assert pipe.teacher_source == TEACHER
    assert not requested(hub, TEACHER)  # the teacher is loaded on first use only

    teacher = pipe.teacher()
    assert not teacher.distilled and teacher.name_or_path == TEACHER
    assert "model.safetensors" in downloaded(hub, TEACHER)
    assert_same_weights(teacher.denoiser, ComoSVC.from_pretrained(model_dirs[0]).denoiser)
    assert pipe.teacher() is teacher


def test_read_singer_tables_downloads_them(hub, model_dirs, tmp_path):
    hub.add_repo(STUDENT, model_dirs[1])
    assert read_singer_tables(STUDENT) == (SINGERS, tiny_stats())
    assert downloaded(hub, STUDENT) == {"singers.json", "stats.json"}  # not the weights

    no_stats = tmp_path / "no-stats"  # stats.json is optional: a 404 for it gives {}
    no_stats.mkdir()
    for name in ("config.json", "singers.json"):
        (no_stats / name).write_bytes((model_dirs[1] / name).read_bytes())
    hub.add_repo("user/no-stats", no_stats)
    assert read_singer_tables("user/no-stats") == (SINGERS, {})


def test_training_push_to_hub_flag_uploads_the_saved_model(hub, model_dirs, tmp_path, capsys):
    from comosvc.training import TrainingRun
    from comosvc.training.args import build_parser

    args = build_parser("train").parse_args(
        ["--config", str(TINY_CONFIG), "--data", "d", "--out", str(tmp_path), "--push_to_hub", "user/comosvc-run"]
    )
    # save_model uses only the run folder: the loop's parts are not needed to test the upload
    run = TrainingRun(None, None, None, None, None, None, tc=None, out=tmp_path, state=None)
    folder = run.save_model(ComoSVC.from_pretrained(model_dirs[0]), push_to_hub=args.push_to_hub)

    assert folder == tmp_path / "model"
    pushed = hub.files("user/comosvc-run")
    assert set(pushed) == MODEL_FILES
    assert pushed == {name: (folder / name).read_bytes() for name in MODEL_FILES}  # what was saved is what arrived
    assert f"pushed to {hub.url}/user/comosvc-run/commit/" in capsys.readouterr().out


def test_a_missing_repo_gives_the_clear_error(hub, tmp_path):
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(FileNotFoundError, match="user/missing is not a model folder and could not be fetched") as err:
        ComoSVC.from_pretrained("user/missing")
    assert isinstance(err.value.__cause__, RepositoryNotFoundError)
    with pytest.raises(OSError, match="Could not read singers.json of the model 'user/missing'"):
        read_singer_tables("user/missing")

    (tmp_path / "card").mkdir()  # a repo that exists but holds no ComoSVC model
    (tmp_path / "card" / "README.md").write_text("# not a model\n")
    hub.add_repo("user/just-a-card", tmp_path / "card")
    with pytest.raises(FileNotFoundError, match="user/just-a-card is not a ComoSVC model: config.json, model.safetensors"):
        ComoSVC.from_pretrained("user/just-a-card")

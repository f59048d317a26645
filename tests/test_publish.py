"""Tests of ``notmnist_ds.publish`` against the Hub double in ``hub_server``.

huggingface_hub and datasets read HF_ENDPOINT, HF_HOME and HF_TOKEN when they
are imported, so every round trip through the Hub runs in a subprocess with the
environment from ``client_environment``. The pytest process imports neither
library with those settings, so other test modules are unaffected. The double
runs in a thread of the pytest process, and tests inspect its repositories
directly. Validation and dry runs need no Hub and run in-process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import HubServer, client_environment, refused_port

from notmnist_ds.constants import CLASS_NAMES
from notmnist_ds.publish import PublishError, collect_files, publish
from notmnist_ds.sample_tarballs import encode_png, font_file_name, member_name

TOKEN = "hf_testTokenAlice0123456789abcdef"
OTHER_TOKEN = "hf_testTokenBob0123456789abcdef"
REPO_ID = "alice/notmnist"
CLIENT_TIMEOUT = 180  # seconds, so that a hung client fails one test, not the suite

# Rows of the real sample in each split of the test folder. Raw has more rows
# than sanitized, as a build that drops duplicates has.
SPLIT_ROWS = {
    "sanitized": {
        "train": range(600),
        "validation": range(600, 700),
        "test": range(700, 800),
    },
    "raw": {
        "train": range(650),
        "validation": range(650, 760),
        "test": range(760, 880),
    },
}

PUBLISH_DRIVER = """
import argparse, logging, os, sys
logging.basicConfig(level=os.environ["TEST_LOG_LEVEL"], stream=sys.stderr)
from notmnist_ds.publish import add_publish_arguments, run_publish
parser = argparse.ArgumentParser()
add_publish_arguments(parser)
sys.exit(run_publish(parser.parse_args(sys.argv[1:])))
"""

LOAD_DRIVER = """
import hashlib, json, sys
import datasets

def summarize(dataset):
    digest = hashlib.sha256()
    rows = 0
    for row in dataset.cast_column("image", datasets.Image(decode=False)):
        digest.update(row["image"]["bytes"])
        digest.update(json.dumps([row["label"], row["font"], row["source"]]).encode())
        rows += 1
    features = dataset.features.to_dict()
    return {"rows": rows, "features": features, "digest": digest.hexdigest()}

folder, repo_id = sys.argv[1:3]
summary = {}
for config in ("sanitized", "raw"):
    local = datasets.load_dataset(folder, config)
    remote = datasets.load_dataset(repo_id, config)
    summary[config] = {
        "local": {split: summarize(local[split]) for split in local},
        "remote": {split: summarize(remote[split]) for split in remote},
    }
streamed = datasets.load_dataset(repo_id, split="train", streaming=True)
summary["streaming"] = summarize(streamed)
print(json.dumps(summary))
"""


# -- the built folder --------------------------------------------------------


def write_built_folder(
    real_sample: tuple[np.ndarray, np.ndarray], folder: Path, train_shards: int = 2
) -> Path:
    """Write a folder with the layout of ``notmnist build --output`` from the
    real sample: Parquet shards written by ``Dataset.to_parquet``, a dataset
    card whose YAML lists the sanitized and raw configs, and a reports folder."""
    pixels, labels = real_sample
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "font": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    )
    card = ["---", "configs:"]
    for config, splits in SPLIT_ROWS.items():
        card.append(f"- config_name: {config}")
        if config == "sanitized":
            card.append("  default: true")
        card.append("  data_files:")
        for split, rows in splits.items():
            fonts = [font_file_name(i) for i in rows]
            dataset = datasets.Dataset.from_dict(
                {
                    "image": [
                        {"bytes": encode_png(pixels[i]), "path": None} for i in rows
                    ],
                    "label": [int(labels[i]) for i in rows],
                    "font": fonts,
                    "source": [
                        f"{CLASS_NAMES[labels[i]]}/{member_name(font)}"
                        for i, font in zip(rows, fonts)
                    ],
                },
                features=features,
            )
            shards = train_shards if split == "train" else 1
            (folder / config).mkdir(parents=True, exist_ok=True)
            for index in range(shards):
                path = folder / config / f"{split}-{index:05d}-of-{shards:05d}.parquet"
                dataset.shard(shards, index, contiguous=True).to_parquet(str(path))
            card += [f"  - split: {split}", f"    path: {config}/{split}-*.parquet"]
    card += ["---", "# notMNIST", "", "Letters A to J from about 50,000 fonts."]
    (folder / "README.md").write_text("\n".join(card) + "\n", encoding="utf-8")
    (folder / "reports").mkdir(exist_ok=True)
    (folder / "reports" / "overlap.json").write_text(json.dumps({"exact": 0}))
    (folder / "reports" / "samples.png").write_bytes(encode_png(pixels[0]))
    return folder


def folder_files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def built_folder(sample_build, tmp_path_factory) -> Path:
    """A copy of a real build of the sample tarballs."""
    folder = tmp_path_factory.mktemp("built") / "notmnist"
    shutil.copytree(sample_build.output, folder)
    return folder


@pytest.fixture(scope="module")
def blocked_port():
    sock = refused_port()
    yield sock
    sock.close()


@pytest.fixture
def hub():
    with HubServer(tokens={TOKEN: "alice", OTHER_TOKEN: "bob"}) as server:
        yield server


# -- running the clients -----------------------------------------------------


def run_client(
    args: list[str], environment: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )


def run_publish_client(
    hub: HubServer,
    blocked_port,
    home: Path,
    *args: str,
    token: str | None = TOKEN,
    log_level: str = "INFO",
    extra_environment: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``run_publish`` with ``args`` in a subprocess aimed at ``hub``."""
    environment = client_environment(hub, home, blocked_port, token=token)
    environment["TEST_LOG_LEVEL"] = log_level
    environment.update(extra_environment or {})
    return run_client(["-c", PUBLISH_DRIVER, *args], environment, home)


# -- the round trip: publish, then load through the Hub ----------------------


@pytest.fixture(scope="module")
def round_trip(built_folder, blocked_port, tmp_path_factory):
    """Publish ``built_folder`` with the stored login token, then load both
    configs and a streamed split through the Hub double."""
    home = tmp_path_factory.mktemp("round_trip")
    with HubServer(tokens={TOKEN: "alice"}) as server:
        environment = client_environment(server, home, blocked_port, token=None)
        login_file = Path(environment["HF_HOME"]) / "token"
        login_file.parent.mkdir(parents=True)
        login_file.write_text(TOKEN)
        environment["TEST_LOG_LEVEL"] = "DEBUG"
        environment["HF_DEBUG"] = "1"  # huggingface_hub logs each request as curl
        published = run_client(
            ["-c", PUBLISH_DRIVER, str(built_folder), "--repo-id", REPO_ID],
            environment,
            home,
        )
        assert published.returncode == 0, published.stderr
        commits_after_publish = server.commits_created
        loaded = run_client(
            ["-c", LOAD_DRIVER, str(built_folder), REPO_ID], environment, home
        )
        assert loaded.returncode == 0, loaded.stderr
        yield {
            "server": server,
            "published": published,
            "commits_after_publish": commits_after_publish,
            "summary": json.loads(loaded.stdout.strip().splitlines()[-1]),
            "environment": environment,
            "home": home,
        }


def test_publish_makes_one_commit(round_trip):
    assert round_trip["commits_after_publish"] == 1


def test_publish_uploads_every_file(round_trip, built_folder):
    _, remote_files = round_trip["server"].snapshot(REPO_ID)
    local_files = folder_files(built_folder)
    assert set(remote_files) == set(local_files) | {".gitattributes"}
    for path, content in local_files.items():
        assert remote_files[path] == content, path


def test_publish_stores_parquet_and_png_with_lfs(round_trip):
    server = round_trip["server"]
    head = server.repos[REPO_ID].head("main")
    lfs_paths = {path for path, stored in head.files.items() if stored.lfs}
    parquet = {path for path in head.files if path.endswith(".parquet")}
    assert len(parquet) > 6
    assert parquet <= lfs_paths
    assert "reports/samples.png" in lfs_paths
    assert "README.md" not in lfs_paths
    assert "reports/overlap.json" not in lfs_paths


def test_publish_uses_stored_login_token(round_trip):
    authorizations = set(round_trip["server"].authorizations)
    assert authorizations == {f"Bearer {TOKEN}"}


def test_publish_debug_output_has_no_token(round_trip):
    published = round_trip["published"]
    assert "DEBUG" in published.stderr  # the checks below cover debug logging
    assert TOKEN not in published.stdout
    assert TOKEN not in published.stderr


def test_round_trip_uses_only_implemented_endpoints(round_trip):
    assert round_trip["server"].unhandled == []


def test_publish_prints_commit_url(round_trip):
    head, _ = round_trip["server"].snapshot(REPO_ID)
    assert head in round_trip["published"].stdout


@pytest.mark.parametrize("config", ["sanitized", "raw"])
def test_load_dataset_from_hub_matches_local_folder(round_trip, config, sample_build):
    summary = round_trip["summary"][config]
    expected = sample_build.split_sizes[config]
    assert set(summary["remote"]) == set(expected)
    for split, rows in expected.items():
        remote, local = summary["remote"][split], summary["local"][split]
        assert remote["rows"] == rows, split
        assert local["rows"] == rows, split
        assert remote["features"] == local["features"], split
        assert remote["digest"] == local["digest"], split


def test_load_dataset_from_hub_keeps_features(round_trip):
    features = round_trip["summary"]["sanitized"]["remote"]["train"]["features"]
    assert features["image"]["_type"] == "Image"
    assert features["label"]["_type"] == "ClassLabel"
    assert features["label"]["names"] == list(CLASS_NAMES)


def test_streaming_from_hub_matches_local_train_split(round_trip, sample_build):
    streamed = round_trip["summary"]["streaming"]
    local = round_trip["summary"]["sanitized"]["local"]["train"]
    assert streamed["rows"] == sample_build.split_sizes["sanitized"]["train"]
    assert streamed["digest"] == local["digest"]


def test_publish_again_makes_no_commit(round_trip, built_folder):
    server = round_trip["server"]
    head_before, files_before = server.snapshot(REPO_ID)
    commits_before = server.commits_created
    again = run_client(
        ["-c", PUBLISH_DRIVER, str(built_folder), "--repo-id", REPO_ID],
        round_trip["environment"],
        round_trip["home"],
    )
    assert again.returncode == 0, again.stderr
    assert "already up to date" in again.stdout
    assert server.commits_created == commits_before
    assert server.snapshot(REPO_ID) == (head_before, files_before)


# -- dry run -------------------------------------------------------------------


def test_dry_run_lists_files_and_uploads_nothing(
    hub, blocked_port, built_folder, tmp_path
):
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(built_folder),
        "--repo-id",
        REPO_ID,
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert hub.requests == []
    assert REPO_ID in result.stdout
    assert "branch main" in result.stdout
    lines = {
        line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line
    }
    for path, content in folder_files(built_folder).items():
        assert path in lines, path
        assert lines[path][0] == f"{len(content):,}", path
    parquet = [path for path in lines if path.endswith(".parquet")]
    assert parquet
    for path in parquet:
        assert lines[path][1] == "lfs", path
    assert lines["reports/samples.png"][1] == "lfs"
    assert lines["README.md"][1] == "regular"
    assert "Nothing was uploaded." in result.stdout


def test_dry_run_result_matches_folder(built_folder):
    result = publish(built_folder, REPO_ID, revision="v2", dry_run=True)
    assert result.dry_run
    assert result.commit_oid is None
    assert result.revision == "v2"
    assert set(result.uploaded) == set(folder_files(built_folder))


# -- errors from the Hub ------------------------------------------------------


@pytest.fixture(scope="module")
def changed_folder(real_sample, tmp_path_factory) -> Path:
    """A built folder whose content differs from ``built_folder``'s: the
    sanitized and raw train splits are one shard instead of two."""
    return write_built_folder(
        real_sample, tmp_path_factory.mktemp("changed"), train_shards=1
    )


@pytest.mark.parametrize("token", [OTHER_TOKEN + "x", None], ids=["invalid", "missing"])
def test_publish_401_names_repo_and_login(
    hub, blocked_port, built_folder, changed_folder, tmp_path, token
):
    hub.create_repository(REPO_ID, folder_files(built_folder))
    before = hub.snapshot(REPO_ID)
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(changed_folder),
        "--repo-id",
        REPO_ID,
        token=token,
    )
    assert result.returncode == 1
    assert REPO_ID in result.stderr
    assert "HTTP 401" in result.stderr
    assert "hf auth login" in result.stderr
    assert "HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert hub.snapshot(REPO_ID) == before
    assert hub.commits_created == 0


def test_publish_403_names_repo_and_permissions(
    hub, blocked_port, built_folder, changed_folder, tmp_path
):
    hub.create_repository(REPO_ID, folder_files(built_folder))
    before = hub.snapshot(REPO_ID)
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(changed_folder),
        "--repo-id",
        REPO_ID,
        token=OTHER_TOKEN,
    )
    assert result.returncode == 1
    assert REPO_ID in result.stderr
    assert "HTTP 403" in result.stderr
    assert "write permission" in result.stderr
    assert hub.snapshot(REPO_ID) == before


def test_publish_500_on_commit_leaves_repo_unchanged(
    hub, blocked_port, built_folder, changed_folder, tmp_path
):
    hub.create_repository(REPO_ID, folder_files(built_folder))
    before = hub.snapshot(REPO_ID)
    hub.fail("commit", 500)
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(changed_folder),
        "--repo-id",
        REPO_ID,
    )
    assert result.returncode == 1
    assert REPO_ID in result.stderr
    assert "HTTP 500" in result.stderr
    assert "try again later" in result.stderr
    assert f"the branch head is still {before[0]}" in result.stderr
    assert hub.snapshot(REPO_ID) == before
    assert hub.commits_created == 0


def test_publish_lfs_upload_failure_leaves_repo_unchanged(
    hub, blocked_port, built_folder, changed_folder, tmp_path
):
    hub.create_repository(REPO_ID, folder_files(built_folder))
    before = hub.snapshot(REPO_ID)
    # Storage rejects the second file after the first one was uploaded. 403 is
    # not retried by huggingface_hub, unlike 5xx.
    failure = hub.fail("lfs_upload", 403, skip=1)
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(changed_folder),
        "--repo-id",
        REPO_ID,
    )
    assert result.returncode == 1
    assert failure.fired >= 1
    assert "HTTP 403" in result.stderr
    assert "storage service rejected a file upload" in result.stderr
    assert "No file of this upload was committed." in result.stderr
    assert hub.snapshot(REPO_ID) == before
    assert hub.commits_created == 0


def test_publish_recovers_from_one_lfs_upload_500(
    hub, blocked_port, built_folder, tmp_path
):
    # huggingface_hub retries a 5xx LFS upload after a one-second backoff.
    failure = hub.fail("lfs_upload", 500, skip=1, times=1)
    result = run_publish_client(
        hub, blocked_port, tmp_path, str(built_folder), "--repo-id", REPO_ID
    )
    assert result.returncode == 0, result.stderr
    assert failure.fired == 1
    assert hub.commits_created == 1
    _, remote_files = hub.snapshot(REPO_ID)
    assert set(remote_files) == set(folder_files(built_folder)) | {".gitattributes"}


# -- the token stays secret ---------------------------------------------------


@pytest.mark.parametrize("scenario", ["invalid_token", "server_echoes_token"])
def test_publish_error_never_outputs_token(
    hub, blocked_port, built_folder, tmp_path, scenario
):
    token = TOKEN
    if scenario == "invalid_token":
        token = "hf_testTokenInvalid0123456789abcdef"
    else:
        # A server message that quotes the token must not reach the output.
        hub.fail("commit", 500, message=f"backend failed for Bearer {TOKEN}")
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(built_folder),
        "--repo-id",
        REPO_ID,
        "--token",
        token,
        token=None,
        log_level="DEBUG",
        extra_environment={"HF_DEBUG": "1"},
    )
    assert result.returncode == 1
    assert f"Bearer {token}" in hub.authorizations
    assert "DEBUG" in result.stderr  # the checks below cover debug logging
    assert token not in result.stdout
    error_lines = [
        line for line in result.stderr.splitlines() if line.startswith("error:")
    ]
    assert len(error_lines) == 1
    assert token not in error_lines[0]
    if scenario == "invalid_token":
        # httpcore logs response headers at DEBUG as received. A server that
        # echoes the token in a header gets it logged there, so the other
        # scenario checks only the error message.
        assert token not in result.stderr


# -- what publish changes on the Hub -------------------------------------------


def test_publish_deletes_stale_shards(
    hub, blocked_port, built_folder, changed_folder, tmp_path
):
    hub.create_repository(REPO_ID, {**folder_files(built_folder), "notes.txt": b"kept"})
    result = run_publish_client(
        hub, blocked_port, tmp_path, str(changed_folder), "--repo-id", REPO_ID
    )
    assert result.returncode == 0, result.stderr
    _, remote_files = hub.snapshot(REPO_ID)
    assert "sanitized/train-00000-of-00002.parquet" not in remote_files
    assert "sanitized/train-00001-of-00002.parquet" not in remote_files
    assert "sanitized/train-00000-of-00001.parquet" in remote_files
    assert remote_files["notes.txt"] == b"kept"
    assert hub.commits_created == 1


def test_publish_private_creates_private_repo(
    hub, blocked_port, built_folder, tmp_path
):
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(built_folder),
        "--repo-id",
        REPO_ID,
        "--private",
    )
    assert result.returncode == 0, result.stderr
    assert hub.repos[REPO_ID].private


def test_publish_private_rejects_public_repo(hub, blocked_port, built_folder, tmp_path):
    hub.create_repository(REPO_ID, {"notes.txt": b"public"})
    before = hub.snapshot(REPO_ID)
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(built_folder),
        "--repo-id",
        REPO_ID,
        "--private",
    )
    assert result.returncode == 1
    assert "is public" in result.stderr
    assert REPO_ID in result.stderr
    assert hub.snapshot(REPO_ID) == before


def test_publish_revision_commits_to_new_branch(
    hub, blocked_port, built_folder, tmp_path
):
    hub.create_repository(REPO_ID)
    main_before = hub.snapshot(REPO_ID)
    result = run_publish_client(
        hub,
        blocked_port,
        tmp_path,
        str(built_folder),
        "--repo-id",
        REPO_ID,
        "--revision",
        "v1",
    )
    assert result.returncode == 0, result.stderr
    assert hub.snapshot(REPO_ID) == main_before
    _, branch_files = hub.snapshot(REPO_ID, branch="v1")
    assert set(branch_files) == set(folder_files(built_folder)) | {".gitattributes"}
    assert hub.repos[REPO_ID].history("v1")[1] == main_before[0]


# -- folder validation (no Hub needed) ----------------------------------------


@pytest.fixture
def folder_copy(built_folder, tmp_path) -> Path:
    copy = tmp_path / "copy"
    for path, content in folder_files(built_folder).items():
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / path).write_bytes(content)
    return copy


def test_collect_files_rejects_missing_folder(tmp_path):
    with pytest.raises(PublishError, match="does not exist") as error:
        collect_files(tmp_path / "absent")
    assert "notmnist build --output" in str(error.value)


def test_collect_files_rejects_missing_readme(folder_copy):
    (folder_copy / "README.md").unlink()
    with pytest.raises(PublishError, match="README.md is missing"):
        collect_files(folder_copy)


def test_collect_files_rejects_readme_without_configs(folder_copy):
    (folder_copy / "README.md").write_text("---\nlicense: mit\n---\n# notMNIST\n")
    with pytest.raises(PublishError, match="no 'configs' list"):
        collect_files(folder_copy)


def test_collect_files_rejects_readme_without_front_matter(folder_copy):
    (folder_copy / "README.md").write_text("# notMNIST\n")
    with pytest.raises(PublishError, match="no YAML front matter"):
        collect_files(folder_copy)


def test_collect_files_rejects_pattern_without_files(folder_copy):
    for path in (folder_copy / "raw").glob("test-*.parquet"):
        path.unlink()
    with pytest.raises(PublishError) as error:
        collect_files(folder_copy)
    message = str(error.value)
    assert "config 'raw'" in message
    assert "split 'test'" in message
    assert "raw/test-*.parquet" in message


def test_collect_files_rejects_parquet_without_features(folder_copy):
    path = folder_copy / "raw" / "validation-00000-of-00001.parquet"
    pq.write_table(pa.table({"label": [0, 1]}), path)
    with pytest.raises(PublishError, match="no 'huggingface' schema metadata") as error:
        collect_files(folder_copy)
    assert str(path) in str(error.value)


def test_collect_files_rejects_truncated_parquet(folder_copy):
    path = folder_copy / "sanitized" / "test-00000-of-00001.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PublishError, match="not a readable Parquet file"):
        collect_files(folder_copy)


def test_collect_files_skips_hidden_files(folder_copy, caplog):
    (folder_copy / ".cache").mkdir()
    (folder_copy / ".cache" / "lock").write_text("x")
    (folder_copy / ".DS_Store").write_text("x")
    paths = [f.path_in_repo for f in collect_files(folder_copy)]
    assert not any(path.startswith(".") for path in paths)
    assert "skipped 2 hidden files" in caplog.text


@pytest.mark.parametrize("repo_id", ["notmnist", "a/b/c", "alice/bad name", ""])
def test_publish_rejects_invalid_repo_id(built_folder, repo_id):
    with pytest.raises(PublishError, match="invalid repository id"):
        publish(built_folder, repo_id, dry_run=True)


def test_publish_rejects_files_the_build_did_not_write(built_folder, tmp_path):
    folder = tmp_path / "with-notes"
    shutil.copytree(built_folder, folder)
    (folder / "secret.env").write_text("HF_TOKEN=hf_abc")
    with pytest.raises(PublishError) as error:
        publish(folder, REPO_ID, dry_run=True)
    assert "secret.env" in str(error.value)

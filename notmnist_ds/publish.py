"""Publish a built dataset folder to a Hugging Face Hub dataset repository.

The folder that ``notmnist build --output DIR`` writes is uploaded as one commit,
so a failed upload leaves the repository as it was. Files whose content the Hub
already has are not uploaded again, and when nothing differs no commit is made.

All Hub traffic goes through ``huggingface_hub``, which reads the endpoint from
``HF_ENDPOINT`` and, when no token is passed, the token from ``HF_TOKEN`` or the
login stored by ``hf auth login``. This module never logs or prints a token,
and it removes the token from the Hub's error messages that it reports.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import huggingface_hub
import pyarrow.parquet as pq
import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.hf_api import CommitInfo, RepoFile
from huggingface_hub.utils import validate_repo_id
from huggingface_hub.utils.sha import git_hash

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
DEFAULT_BRANCH = "main"
DEFAULT_COMMIT_MESSAGE = "Publish the notMNIST dataset build"

# The Hub decides per file, when the upload starts, whether it stores the file
# with Git LFS. A dry run predicts that decision from these binary data and
# image suffixes, the size and a NUL byte in the first bytes.
# NOTE: the prediction is not checked against the Hub; a dry run may label a
# file "regular" that the Hub then stores with LFS, or the reverse.
LFS_SUFFIXES = frozenset(
    {".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".npy", ".npz"}
    | {".gz", ".tar", ".tgz", ".zip", ".zst", ".bin", ".pkl", ".pickle"}
)
LFS_MIN_SIZE = 10 * 1024 * 1024
SAMPLE_SIZE = 512  # huggingface_hub sends the Hub this many first bytes to decide


class PublishError(RuntimeError):
    """Publishing failed. The message names the folder or repository, the HTTP
    status when the Hub returned one, and what to do next."""


@dataclass(frozen=True)
class LocalFile:
    """One file of the built folder and how it will be stored on the Hub."""

    path_in_repo: str
    local_path: Path
    size: int  # bytes
    lfs: bool  # predicted locally: the Hub decides when the upload starts


@dataclass(frozen=True)
class PublishResult:
    """Outcome of ``publish``, or for a dry run its plan.

    ``uploaded`` and ``deleted`` list repository paths. ``commit_oid`` is the
    new commit, the unchanged head when ``up_to_date``, and None for a dry run.
    """

    repo_id: str
    revision: str
    files: tuple[LocalFile, ...]
    uploaded: tuple[str, ...]
    deleted: tuple[str, ...]
    commit_oid: str | None
    commit_url: str | None
    up_to_date: bool
    dry_run: bool


def publish(
    folder: Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    commit_message: str | None = None,
) -> PublishResult:
    """Upload the built dataset ``folder`` to the dataset repository ``repo_id``.

    The folder is validated first (see ``collect_files``). Then the repository
    is created when missing (``private`` applies only to a new repository), the
    branch ``revision`` is created from main when missing, and one commit adds
    every file whose content differs from the branch head. Remote files inside
    the folder's top-level folders (``sanitized/``, ``raw/``, ...) that the
    folder lacks are deleted in the same commit, so no stale shard matches a
    config's ``data_files`` pattern. Remote files at the repository root, such
    as ``.gitattributes``, are kept. ``dry_run`` validates and lists the files
    without contacting the Hub.

    ``token=None`` lets huggingface_hub use ``HF_TOKEN`` or the stored login.
    Raises PublishError when the folder is invalid or the Hub returns an error.
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    branch = revision or DEFAULT_BRANCH
    files = collect_files(folder)
    check_only_build_files(folder, files)
    if dry_run:
        return PublishResult(
            repo_id=repo_id,
            revision=branch,
            files=files,
            uploaded=tuple(f.path_in_repo for f in files),
            deleted=(),
            commit_oid=None,
            commit_url=None,
            up_to_date=False,
            dry_run=True,
        )

    api = HfApi(token=token)
    secrets = [s for s in (token, huggingface_hub.get_token()) if s]
    head: str | None = None
    try:
        head = prepare_branch(api, repo_id, branch, private)
        changed, stale = plan_changes(api, repo_id, head, files)
        if not changed and not stale:
            logger.info("%s@%s is already up to date at %s", repo_id, branch, head)
            commit = None
        else:
            commit = send_commit(
                api, repo_id, branch, head, changed, stale, commit_message
            )
    except PublishError:
        raise
    except Exception as error:
        if not is_upload_failure(error):
            raise
        raise PublishError(
            redact(describe_failure(error, api, repo_id, branch, head), secrets)
        ) from None

    return PublishResult(
        repo_id=repo_id,
        revision=branch,
        files=files,
        uploaded=tuple(f.path_in_repo for f in changed),
        deleted=tuple(stale),
        commit_oid=commit.oid if commit else head,
        commit_url=commit.commit_url if commit else None,
        up_to_date=commit is None,
        dry_run=False,
    )


def prepare_branch(api: HfApi, repo_id: str, branch: str, private: bool) -> str:
    """Create the repository and the branch when missing; return the branch head.

    Raises PublishError when ``private`` is requested for an existing public
    repository, because create_repo does not change an existing repository.
    """
    # private=None leaves a new repository's visibility to the namespace's
    # default, which an organization may set to private.
    api.create_repo(
        repo_id, repo_type=REPO_TYPE, private=True if private else None, exist_ok=True
    )
    if branch != DEFAULT_BRANCH:
        api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
    info = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch)
    if private and not info.private:
        raise PublishError(
            f"dataset repository '{repo_id}' exists and is public, but a private "
            "upload was requested. Make it private in its settings on the Hub, "
            "or publish without --private."
        )
    return info.sha


def plan_changes(
    api: HfApi, repo_id: str, head: str, files: tuple[LocalFile, ...]
) -> tuple[list[LocalFile], list[str]]:
    """Return the local files that differ from commit ``head`` and the remote
    paths to delete (see ``stale_remote_paths``)."""
    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(
            repo_id, repo_type=REPO_TYPE, revision=head, recursive=True
        )
        if isinstance(entry, RepoFile)
    }
    changed = [f for f in files if not matches_remote(f, remote.get(f.path_in_repo))]
    return changed, stale_remote_paths(files, remote)


def send_commit(
    api: HfApi,
    repo_id: str,
    branch: str,
    head: str,
    changed: list[LocalFile],
    stale: list[str],
    commit_message: str | None,
) -> CommitInfo:
    """Upload ``changed`` and delete ``stale`` in one commit on top of ``head``."""
    logger.info(
        "committing %d changed and %d deleted files to %s@%s (parent %s)",
        len(changed),
        len(stale),
        repo_id,
        branch,
        head,
    )
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.local_path)
        for f in changed
    ]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    # parent_commit makes the Hub reject the commit if the branch moved since
    # plan_changes compared it, instead of mixing two uploads.
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
        repo_type=REPO_TYPE,
        revision=branch,
        parent_commit=head,
    )


def check_only_build_files(folder: Path, files: tuple[LocalFile, ...]) -> None:
    """Raise PublishError when the folder contains files a build does not write,
    so notes, weights or secrets left in it are not published by accident."""
    from .atomic import BUILD_FILE_PATTERN, list_some

    foreign = sorted(f.path_in_repo for f in files if not BUILD_FILE_PATTERN.fullmatch(f.path_in_repo))
    if foreign:
        raise PublishError(
            f"{folder} contains files that notmnist build does not write ({list_some(foreign)}); "
            "move them out of the folder before publishing, so that only the dataset "
            "is uploaded"
        )


def check_repo_id(repo_id: str) -> None:
    """Raise PublishError unless ``repo_id`` is a valid ``NAMESPACE/NAME``."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"invalid repository id '{repo_id}': {error}") from None
    if repo_id.count("/") != 1:
        raise PublishError(
            f"invalid repository id '{repo_id}': expected NAMESPACE/NAME, "
            "for example your-user-name/notmnist"
        )


def collect_files(folder: Path) -> tuple[LocalFile, ...]:
    """Validate the built ``folder`` and return its files in path order.

    The folder must contain README.md whose YAML front matter has a non-empty
    ``configs`` list, every ``data_files`` path pattern of every config must
    match at least one Parquet file, and every Parquet file must carry the
    ``datasets`` features in its schema metadata. Hidden files and folders
    (names starting with ".") are skipped and counted in a warning.
    Raises PublishError naming the folder, the file or the pattern.
    """
    rebuild = f"Rebuild it with `notmnist build --output {folder}`."
    if not folder.is_dir():
        raise PublishError(f"dataset folder {folder} does not exist. {rebuild}")
    readme = folder / "README.md"
    if not readme.is_file():
        raise PublishError(
            f"{readme} is missing: the Hub needs the dataset card. {rebuild}"
        )
    configs = read_configs(readme)

    files: list[LocalFile] = []
    hidden: list[str] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in PurePosixPath(relative).parts):
            if path.is_file():
                hidden.append(relative)
            continue
        if path.is_file():
            files.append(describe_local_file(path, relative))
    if hidden:
        logger.warning(
            "skipped %d hidden files in %s, for example %s",
            len(hidden),
            folder,
            hidden[0],
        )

    parquet_paths = {
        f.path_in_repo for f in files if f.path_in_repo.endswith(".parquet")
    }
    if not parquet_paths:
        raise PublishError(f"dataset folder {folder} has no Parquet files. {rebuild}")
    referenced: set[str] = set()
    for name, split, pattern in iter_data_file_patterns(configs, readme):
        matches = match_pattern(folder, pattern) & parquet_paths
        if not matches:
            raise PublishError(
                f"{readme}: config '{name}' split '{split}' lists data files "
                f"'{pattern}', but no Parquet file in {folder} matches it. {rebuild}"
            )
        referenced |= matches
    unreferenced = sorted(parquet_paths - referenced)
    if unreferenced:
        logger.warning(
            "%d Parquet files match no config in README.md and will not load, "
            "for example %s",
            len(unreferenced),
            unreferenced[0],
        )
    for path in sorted(parquet_paths):
        check_parquet(folder / path, rebuild)
    return tuple(files)


def match_pattern(folder: Path, pattern: str) -> set[str]:
    """Return the folder-relative paths of the files that the data_files
    ``pattern`` matches. As on the Hub, ``*`` stays within one folder level
    and ``**`` spans any number of levels."""
    try:
        return {
            path.relative_to(folder).as_posix()
            for path in folder.glob(pattern)
            if path.is_file()
        }
    except (ValueError, NotImplementedError):  # absolute or empty pattern
        return set()


def read_configs(readme: Path) -> list[dict]:
    """Return the ``configs`` list of the dataset card's YAML front matter."""
    text = readme.read_text(encoding="utf-8")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise PublishError(
            f"{readme} has no YAML front matter: the first line must be '---'"
        )
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise PublishError(
            f"{readme}: the YAML front matter has no closing '---'"
        ) from None
    try:
        metadata = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as error:
        raise PublishError(f"{readme}: invalid YAML front matter: {error}") from None
    configs = metadata.get("configs") if isinstance(metadata, dict) else None
    if not isinstance(configs, list) or not configs:
        raise PublishError(
            f"{readme}: the YAML front matter has no 'configs' list, so load_dataset "
            "would not find the sanitized and raw configs"
        )
    return configs


def iter_data_file_patterns(
    configs: list[dict], readme: Path
) -> Iterator[tuple[str, str, str]]:
    """Yield ``(config_name, split, pattern)`` for every data_files entry.

    ``data_files`` may be a pattern, a list of patterns, or a list of
    ``{split, path}`` entries whose path is a pattern or a list of patterns.
    """
    for config in configs:
        name = config.get("config_name") if isinstance(config, dict) else None
        data_files = config.get("data_files") if isinstance(config, dict) else None
        if not name or not data_files:
            raise PublishError(
                f"{readme}: every config needs 'config_name' and 'data_files', "
                f"but one config is {config!r}"
            )
        entries = data_files if isinstance(data_files, list) else [data_files]
        for entry in entries:
            if isinstance(entry, str):
                yield name, "train", entry
                continue
            split = entry.get("split", "train") if isinstance(entry, dict) else None
            patterns = entry.get("path") if isinstance(entry, dict) else None
            if split is None or not patterns:
                raise PublishError(
                    f"{readme}: config '{name}' has a data_files entry without "
                    f"'split' and 'path': {entry!r}"
                )
            for pattern in patterns if isinstance(patterns, list) else [patterns]:
                yield name, split, pattern


def check_parquet(path: Path, rebuild: str) -> None:
    """Raise PublishError unless ``path`` is a readable Parquet file whose schema
    metadata contains the ``datasets`` features (key ``huggingface``)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as error:
        raise PublishError(
            f"{path} is not a readable Parquet file ({error}). {rebuild}"
        ) from None
    if b"huggingface" not in (schema.metadata or {}):
        raise PublishError(
            f"{path} has no 'huggingface' schema metadata, so the Hub would not know "
            f"that its image column holds images. {rebuild}"
        )


def describe_local_file(path: Path, path_in_repo: str) -> LocalFile:
    """Return the upload description of one local file."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        sample = file.read(SAMPLE_SIZE)
    lfs = size > 0 and (
        path.suffix.lower() in LFS_SUFFIXES or size >= LFS_MIN_SIZE or b"\0" in sample
    )
    return LocalFile(path_in_repo=path_in_repo, local_path=path, size=size, lfs=lfs)


def matches_remote(local: LocalFile, remote: RepoFile | None) -> bool:
    """Return whether ``remote`` exists with the same content as ``local``,
    comparing the LFS sha256 for LFS files and the
    git blob id otherwise."""
    if remote is None or remote.size != local.size:
        return False
    if remote.lfs is not None:
        digest = hashlib.sha256()
        with open(local.local_path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest() == remote.lfs.sha256
    return git_hash(local.local_path.read_bytes()) == remote.blob_id


def stale_remote_paths(files: tuple[LocalFile, ...], remote: dict) -> list[str]:
    """Return the remote paths inside the local top-level folders that the
    local folder lacks, in path order."""
    local_paths = {f.path_in_repo for f in files}
    top_folders = {PurePosixPath(p).parts[0] for p in local_paths if "/" in p}
    return sorted(
        path
        for path in remote
        if "/" in path
        and path.split("/", 1)[0] in top_folders
        and path not in local_paths
    )


def iter_causes(error: BaseException) -> Iterator[BaseException]:
    """Yield ``error`` and the exceptions that caused it, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def is_transport_error(error: BaseException) -> bool:
    """Return whether ``error`` or one of its causes is a network error.

    The classes are matched by module because huggingface_hub 1.x uses httpx
    and 2.x uses httpx2, and this package supports both.
    """
    return any(
        type(cause).__module__.split(".")[0]
        in ("httpx", "httpx2", "httpcore", "httpcore2")
        for cause in iter_causes(error)
    )


def is_upload_failure(error: BaseException) -> bool:
    """Return whether ``error`` comes from the Hub, the network or the files
    rather than from a bug, so that it becomes a PublishError, not a traceback."""
    if is_transport_error(error):
        return True
    return any(
        isinstance(cause, (HfHubHTTPError, OSError, ValueError))
        for cause in iter_causes(error)
    )


def find_http_error(error: BaseException) -> HfHubHTTPError | None:
    """Return the HfHubHTTPError that caused ``error``, if any.

    huggingface_hub wraps a failed LFS upload in a RuntimeError, so the
    HTTP error can sit several causes deep.
    """
    for cause in iter_causes(error):
        if isinstance(cause, HfHubHTTPError):
            return cause
    return None


def describe_failure(
    error: Exception, api: HfApi, repo_id: str, branch: str, head: str | None
) -> str:
    """Return the message for a failed upload: repository, HTTP status, what
    to do next, and whether the repository changed."""
    target = f"dataset repository '{repo_id}' (branch '{branch}')"
    again = "Files the Hub already has are not uploaded again."
    http_error = find_http_error(error)
    if http_error is None and is_transport_error(error):
        return (
            f"could not reach the Hub at {api.endpoint} to publish to {target}: "
            f"{type(error).__name__}: {error}. Check the network connection and "
            f"HF_ENDPOINT, then run the command again. {again}"
        )
    if http_error is None:
        return (
            f"publishing to {target} failed: {type(error).__name__}: {error}. "
            f"Fix the cause, then run the command again. {again}"
        )

    response = http_error.response
    status = response.status_code
    request = f"{response.request.method} {response.request.url.path}"
    # The Hub API paths contain /api/ or .git/info/lfs. Other requests are
    # file uploads to the storage URLs that the LFS batch API returned.
    path = response.request.url.path
    to_storage = "/api/" not in path and ".git/info/lfs" not in path
    if to_storage and status < 500:
        advice = (
            "The storage service rejected a file upload, for example because its "
            "upload URL expired: run the command again."
        )
    elif status == 401:
        advice = (
            "The Hub rejected the credentials or got none: log in with "
            "`hf auth login`, or set HF_TOKEN, or pass --token with a token "
            "that has write access."
        )
    elif status == 403:
        namespace = repo_id.split("/")[0]
        advice = (
            f"Check that your token has write permission on '{repo_id}' and on "
            f"the namespace '{namespace}' (for an organization, a write role in it)."
        )
    elif status == 404:
        advice = (
            f"Check the repository id '{repo_id}' (NAMESPACE/NAME) and the "
            f"branch '{branch}'."
        )
    elif status == 412:
        advice = "The branch moved during the upload: run the command again."
    elif status >= 500:
        advice = "The Hub failed: try again later."
    else:
        advice = "See the Hub's message above."
    server_message = http_error.server_message or ""
    message = (
        f"publishing to {target} failed with HTTP {status} on {request}"
        + (f": {server_message.strip()}" if server_message.strip() else "")
        + f". {advice} "
        + describe_repository_state(api, repo_id, branch, head, request)
    )
    return message


def describe_repository_state(
    api: HfApi, repo_id: str, branch: str, head: str | None, failed_request: str
) -> str:
    """Return a sentence telling whether the failed upload changed the branch.

    Only the commit endpoint changes a branch. When it was the request that
    failed, the branch head is read again to report what the Hub kept.
    """
    if "/commit/" not in failed_request:
        return "No file of this upload was committed."
    try:
        now = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch).sha
    except Exception as error:
        if not is_upload_failure(error):
            raise
        # The Hub is failing: report that, and keep the first error as the message.
        logger.debug("could not read the head of %s@%s: %s", repo_id, branch, error)
        return "Could not read the branch head to confirm that nothing was committed."
    if now == head:
        return f"Nothing was committed: the branch head is still {head}."
    return f"The branch head moved from {head} to {now}: check the repository history."


def redact(text: str, secrets: list[str]) -> str:
    """Return ``text`` with every secret replaced by ``<token>``."""
    for secret in secrets:
        text = text.replace(secret, "<token>")
    return text


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``publish`` command's arguments to ``parser``."""
    parser.add_argument(
        "folder",
        type=Path,
        help="built dataset folder, as `notmnist build --output` writes it",
    )
    parser.add_argument(
        "--repo-id",
        required=True,
        help="dataset repository on the Hub, as NAMESPACE/NAME",
    )
    parser.add_argument(
        "--private",
        action="store_true",
        help="create the repository as private; fail if it exists and is public",
    )
    parser.add_argument(
        "--revision",
        default=None,
        help="branch to commit to (default: main), created from main when missing",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="Hub access token with write access (default: HF_TOKEN, then the login "
        "stored by `hf auth login`). A token given here is visible to other users "
        "of the machine in the process list.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the folder and list the files to upload, "
        "without contacting the Hub",
    )
    parser.add_argument(
        "--commit-message", default=None, help=f"default: '{DEFAULT_COMMIT_MESSAGE}'"
    )


def run_publish(args: argparse.Namespace) -> int:
    """Run ``publish`` with parsed arguments, print a summary, return the exit code.

    Returns 0 on success (also when already up to date) and 1 on PublishError,
    whose message goes to stderr.
    """
    try:
        result = publish(
            args.folder,
            args.repo_id,
            token=args.token,
            private=args.private,
            revision=args.revision,
            dry_run=args.dry_run,
            commit_message=args.commit_message,
        )
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_result(result))
    return 0


def format_result(result: PublishResult) -> str:
    """Return the human-readable summary that ``run_publish`` prints."""
    target = f"dataset repository {result.repo_id}, branch {result.revision}"
    if result.dry_run:
        total = sum(f.size for f in result.files)
        width = max(len(f.path_in_repo) for f in result.files)
        summary = (
            f"Dry run: would publish {len(result.files)} files "
            f"({total:,} bytes) to {target}."
        )
        lines = [summary, f"{'path':<{width}}  {'bytes':>12}  storage"]
        for f in result.files:
            storage = "lfs" if f.lfs else "regular"
            lines.append(f"{f.path_in_repo:<{width}}  {f.size:>12,}  {storage}")
        folders = sorted(
            {
                f.path_in_repo.split("/")[0] + "/"
                for f in result.files
                if "/" in f.path_in_repo
            }
        )
        lines.append(
            "Files already on the Hub with the same content are skipped. Remote files "
            f"under {', '.join(folders)} that are not listed here would be deleted."
        )
        lines.append("Nothing was uploaded.")
        return "\n".join(lines)
    if result.up_to_date:
        return f"{target} is already up to date at commit {result.commit_oid}."
    return (
        f"Committed {len(result.uploaded)} uploaded and {len(result.deleted)} deleted "
        f"files to {target}: {result.commit_url}"
    )

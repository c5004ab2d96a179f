"""release.yml's ECR steps, run for real against a fake `aws` that behaves like an immutable
ECR repository: a commit is pushed once as `:<sha>`, a re-run builds and pushes nothing, and a
version tag re-tags that very manifest instead of rebuilding it (audit 356, H3)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ops.test_workflows import load, steps

SHA = "0123456789abcdef0123456789abcdef01234567"
REPO_URL = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/upcheck"
MANIFEST = '{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.index.v1+json"\n}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST.encode()).hexdigest()

# An immutable ECR repository in a JSON file:
# {"manifests": {digest: text}, "tags": {tag: digest}}.
FAKE_AWS = textwrap.dedent(
    """\
    import hashlib, json, sys
    state_file = sys.argv[1]
    args = sys.argv[2:]
    state = json.load(open(state_file))
    opt = lambda name: args[args.index(name) + 1]
    def fail(code):
        sys.stderr.write(f"An error occurred ({code}) when calling the API\\n")
        sys.exit(254)
    with open(state_file + ".log", "a") as log:
        log.write(" ".join(args[:2]) + "\\n")
    assert args[0] == "ecr" and opt("--repository-name") == "upcheck", args
    if state.get("deny"):
        fail("AccessDeniedException")
    if args[1] == "describe-images":
        key, value = opt("--image-ids").split("=", 1)
        assert key == "imageTag"
        if value not in state["tags"]:
            fail("ImageNotFoundException")
        print(state["tags"][value])
    elif args[1] == "batch-get-image":
        digest = opt("--image-ids").removeprefix("imageDigest=")
        media = "application/vnd.oci.image.index.v1+json"
        assert media in args
        print(json.dumps({"imageManifest": state["manifests"][digest],
                          "imageManifestMediaType": media}))
    elif args[1] == "put-image":
        manifest = open(opt("--image-manifest").removeprefix("file://")).read()
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        assert digest == opt("--image-digest"), "manifest changed on the way"
        tag = opt("--image-tag")
        if tag in state["tags"]:
            fail("ImageTagAlreadyExistsException")
        state["tags"][tag] = digest
        json.dump(state, open(state_file, "w"))
        print("{}")
    else:
        raise SystemExit(f"unexpected call {args}")
    """
)


def _step(name: str) -> dict:
    image = load("release.yml")["jobs"]["image"]
    return next(s for s in steps(image) if s.get("name") == name)


class Ecr:
    def __init__(self, folder: Path, tags: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.state = folder / "ecr.json"
        self.state.write_text(json.dumps({"manifests": {DIGEST: MANIFEST}, "tags": tags or {}}))
        bindir = folder / "bin"
        bindir.mkdir()
        (folder / "fake_aws.py").write_text(FAKE_AWS)
        aws = bindir / "aws"
        aws.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{folder / "fake_aws.py"}" "{self.state}" "$@"\n'
        )
        aws.chmod(0o755)
        self.path = f"{bindir}{os.pathsep}{os.environ['PATH']}"

    @property
    def tags(self) -> dict[str, str]:
        return json.loads(self.state.read_text())["tags"]

    def calls(self) -> list[str]:
        log = Path(f"{self.state}.log")
        return log.read_text().splitlines() if log.exists() else []

    def deny(self) -> None:
        state = json.loads(self.state.read_text())
        state["deny"] = True
        self.state.write_text(json.dumps(state))

    def run(
        self, name: str, ref_type: str, **env: str
    ) -> tuple[subprocess.CompletedProcess[str], dict]:
        """One `run:` step as GitHub runs it (bash -eo pipefail), with its env and outputs."""
        step = _step(name)
        outputs = self.folder / f"output-{len(list(self.folder.glob('output-*')))}"
        outputs.write_text("")
        full_env = {
            "PATH": self.path,
            "GITHUB_SHA": SHA,
            "GITHUB_REF_TYPE": ref_type,
            "GITHUB_OUTPUT": str(outputs),
            "REPOSITORY": "upcheck",
            "REPOSITORY_URL": REPO_URL,
            **env,
        }
        for key in step.get("env", {}):
            assert key in full_env, f"the test does not provide {key} of step {name!r}"
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=self.folder,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        values = dict(
            line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line
        )
        return proc, values


def _release(ecr: Ecr, ref_type: str, version: str, built: str | None = None):
    """The image job's look-up and tagging steps; `built` stands in for the build's digest."""
    look, found = ecr.run("Look for the image of this commit", ref_type)
    if look.returncode != 0:
        return look, {}
    digest = found["digest"] or built or ""
    if not found["digest"] and built:
        # What docker/build-push-action pushes.
        state = json.loads(ecr.state.read_text())
        state["tags"][SHA] = built
        ecr.state.write_text(json.dumps(state))
    return ecr.run("Tag the image with its version", ref_type, VERSION=version, DIGEST=digest)


def test_the_build_runs_only_when_no_image_of_the_commit_exists() -> None:
    build = next(
        s
        for s in steps(load("release.yml")["jobs"]["image"])
        if s.get("uses", "").startswith("docker/build-push-action")
    )
    assert build["if"] == "steps.existing.outputs.digest == ''"
    assert (
        build["with"]["tags"].strip() == "${{ steps.names.outputs.repository }}:${{ github.sha }}"
    )
    assert "image.version" not in build["with"]["labels"], "a label cannot follow a re-tag"
    image = load("release.yml")["jobs"]["image"]
    assert image["outputs"]["image"] == "${{ steps.image.outputs.image }}"


def test_main_then_rerun_then_release_tag(tmp_path: Path) -> None:
    ecr = Ecr(tmp_path)
    # First main run: nothing there yet, so the job builds; the dev tag goes on that digest.
    proc, out = _release(ecr, "branch", "0.1.0-dev.7", built=DIGEST)
    assert proc.returncode == 0, proc.stderr
    assert out["image"] == f"{REPO_URL}@{DIGEST}", "deploy by digest"
    assert ecr.tags == {SHA: DIGEST, "0.1.0-dev.7": DIGEST}

    # Re-running the same job: the SHA image is found (no build), the dev tag is already right.
    calls = len(ecr.calls())
    proc, out = _release(ecr, "branch", "0.1.0-dev.7")
    assert proc.returncode == 0, proc.stderr
    assert out["image"] == f"{REPO_URL}@{DIGEST}"
    assert not any("put-image" in c for c in ecr.calls()[calls:])

    # The version tag on that commit: the same manifest gets `0.1.0`, nothing is rebuilt.
    proc, out = _release(ecr, "tag", "0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert ecr.tags["0.1.0"] == DIGEST and ecr.tags[SHA] == DIGEST
    assert out["image"] == f"{REPO_URL}@{DIGEST}"
    # ... and running the tag's job again is harmless too.
    proc, _ = _release(ecr, "tag", "0.1.0")
    assert proc.returncode == 0, proc.stderr


def test_a_tag_on_a_commit_main_never_built_fails_instead_of_building(tmp_path: Path) -> None:
    proc, _ = Ecr(tmp_path).run("Look for the image of this commit", "tag")
    assert proc.returncode != 0
    assert "tag a commit whose main run pushed it" in proc.stdout


def test_a_version_tag_on_another_image_is_an_error(tmp_path: Path) -> None:
    ecr = Ecr(tmp_path, tags={SHA: DIGEST, "0.1.0": "sha256:" + "0" * 64})
    proc, _ = _release(ecr, "tag", "0.1.0")
    assert proc.returncode != 0
    assert "already names" in proc.stdout


@pytest.mark.parametrize(
    "name", ["Look for the image of this commit", "Tag the image with its version"]
)
def test_an_aws_error_other_than_not_found_stops_the_job(tmp_path: Path, name: str) -> None:
    ecr = Ecr(tmp_path)
    ecr.deny()
    proc, _ = ecr.run(name, "branch", VERSION="0.1.0-dev.7", DIGEST=DIGEST)
    assert proc.returncode != 0
    assert "AccessDeniedException" in proc.stderr

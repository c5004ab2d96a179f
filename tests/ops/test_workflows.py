"""The GitHub Actions workflows: yamllint-clean, and their triggers, jobs and permissions.

No runner can execute them here, so the test reads them as data and asserts what matters for
safety: least permissions per job, OIDC (`id-token: write`) only where an AWS role is assumed,
no long-lived keys, and every action pinned to a major version or a full commit SHA.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.ops.conftest import REPO, venv_tool

WORKFLOWS = REPO / ".github" / "workflows"
ASSUME_ROLE = "aws-actions/configure-aws-credentials"
# What any job here may ask for; anything else is more than these workflows need.
ALLOWED_PERMISSIONS = {("contents", "read"), ("id-token", "write")}
PINNED = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?@(v\d+|[0-9a-f]{40})")


def load(name: str) -> dict[str, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def uses(job: dict[str, Any]) -> list[str]:
    return [s["uses"] for s in steps(job) if "uses" in s]


def scripts(job: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def assumes_role(job: dict[str, Any]) -> bool:
    return any(u.split("@")[0] == ASSUME_ROLE for u in uses(job))


ALL = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def test_the_three_workflows_exist() -> None:
    assert ALL == ["ci.yml", "infra.yml", "release.yml"]


def test_yamllint_is_clean_on_every_yaml_file_we_ship() -> None:
    linted = subprocess.run(
        [
            venv_tool("yamllint"),
            "--strict",
            "--format",
            "parsable",
            ".yamllint",
            ".github",
            "ops/prometheus",
            "ops/grafana",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize("name", ALL)
def test_no_default_permissions_and_least_permissions_per_job(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {}, "grant nothing at workflow level"
    for job_name, job in workflow["jobs"].items():
        granted = job.get("permissions")
        assert isinstance(granted, dict) and granted, f"{job_name}: no explicit permissions"
        assert set(granted.items()) <= ALLOWED_PERMISSIONS, f"{job_name}: {granted}"
        oidc = granted.get("id-token") == "write"
        assert oidc == assumes_role(job), f"{job_name}: id-token: write iff it assumes a role"


@pytest.mark.parametrize("name", ALL)
def test_actions_are_pinned_to_a_major_version_or_a_full_sha(name: str) -> None:
    for job_name, job in load(name)["jobs"].items():
        for action in uses(job):
            assert PINNED.fullmatch(action), f"{job_name}: {action}"
        if "uses" in job:  # a reusable workflow call
            assert job["uses"].startswith("./.github/workflows/"), job["uses"]


@pytest.mark.parametrize("name", ALL)
def test_no_long_lived_aws_keys_anywhere(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    assert "aws-access-key-id" not in text and "aws-secret-access-key" not in text
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for job in load(name)["jobs"].values():
        for step in steps(job):
            if step.get("uses", "").startswith(ASSUME_ROLE):
                assert step["with"]["role-to-assume"].startswith("${{ vars.")


@pytest.mark.parametrize("name", ALL)
def test_every_job_has_a_time_limit(name: str) -> None:
    for job_name, job in load(name)["jobs"].items():
        if "uses" not in job:
            assert 0 < job["timeout-minutes"] <= 60, job_name


def test_ci_runs_make_test_on_pull_requests_and_pushes() -> None:
    workflow = load("ci.yml")
    assert {"pull_request", "push", "workflow_call"} <= set(workflow["on"])
    assert workflow["on"]["push"] is None, "every push, on any branch"
    (job,) = workflow["jobs"].values()
    assert steps(job)[-1]["run"].strip() == "bash .ci/run", "the last step is the local CI"
    # .ci/run is the same command this project's CI runs, and it runs `make test`.
    ci_run = (REPO / ".ci" / "run").read_text().splitlines()
    assert "make test" in [line.strip() for line in ci_run]
    packages_line = next(line for line in ci_run if line.startswith("apt_packages="))
    assert "prometheus" in packages_line
    assert any(u.startswith("actions/checkout@") for u in uses(job))


def test_ci_provides_on_github_what_make_test_requires_under_ci_true() -> None:
    """GitHub sets CI=true, where a missing tool fails the tests (tests/support.py): the job
    must install everything .ci/run's machines already have."""
    (job,) = load("ci.yml")["jobs"].values()
    script = scripts(job)
    # .ci/run's Debian packages (and unzip for setup-terraform in the slim container).
    packages_line = next(
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.startswith("apt_packages=")
    )
    wanted = set(packages_line.split("(", 1)[1].rstrip(")").split()) | {"unzip"}
    install = next(line for line in script.splitlines() if "apt-get install" in line)
    assert wanted <= set(install.split()), f"apt-get install misses {wanted - set(install.split())}"
    # Terraform, pinned to the version infra.yml runs.
    setup = next(s for s in steps(job) if s.get("uses", "").startswith("hashicorp/setup-terraform"))
    assert PINNED.fullmatch(setup["uses"])
    assert setup["with"]["terraform_wrapper"] is False
    infra_versions = {
        s["with"]["terraform_version"]
        for j in load("infra.yml")["jobs"].values()
        for s in steps(j)
        if s.get("uses", "").startswith("hashicorp/setup-terraform")
    }
    assert infra_versions == {setup["with"]["terraform_version"]}
    # The provider mirror the Terraform tests read, named by the variable tests/terraform honour.
    order = [s.get("uses", "") or s.get("run", "") for s in steps(job)]
    mirror = next(i for i, s in enumerate(order) if "providers mirror" in s)
    assert "TF_PROVIDER_MIRROR=" in order[mirror] and "GITHUB_ENV" in order[mirror]
    # `providers mirror` needs installed modules, unless it sees the root's providers alone.
    assert "cp ops/terraform/versions.tf ops/terraform/.terraform.lock.hcl" in order[mirror]
    for module in (REPO / "ops" / "terraform" / "modules").glob("*/*.tf"):
        assert "required_providers" not in module.read_text(), f"{module} declares providers"
    assert mirror < len(order) - 1, "mirrored before .ci/run"
    # SPEC.md is outside the repository: on GitHub only, its tests skip (tests/terraform/tf.py).
    assert job["env"]["UPCHECK_SPEC_OPTIONAL"] == "true"
    assert "UPCHECK_SPEC_OPTIONAL" not in (REPO / ".ci" / "run").read_text()
    # Install plus checkov plus the moto apply and destroy do not fit in 20 minutes.
    assert 30 <= job["timeout-minutes"] <= 60


def test_release_builds_pushes_and_deploys_from_main_and_tags_after_the_tests() -> None:
    workflow = load("release.yml")
    assert set(workflow["on"]) == {"push"}
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["on"]["push"]["tags"]
    assert workflow["concurrency"]["cancel-in-progress"] is False

    jobs = workflow["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    image, deploy = jobs["image"], jobs["deploy"]
    assert image["needs"] == "test" and deploy["needs"] == "image"

    assert assumes_role(image) and any(
        u.startswith("aws-actions/amazon-ecr-login@") for u in uses(image)
    )
    build = next(s for s in steps(image) if s.get("uses", "").startswith("docker/build-push"))
    assert build["with"]["push"] is True
    naming = scripts(image)
    assert "${GITHUB_SHA}" in naming and "${VERSION}" in naming, "tag with the SHA and version"
    assert "GITHUB_REF_NAME#v" in naming, "a tag build is tagged with its version"

    assert assumes_role(deploy)
    assert deploy["environment"] == "production-deploy"
    rollout = next(
        s for s in steps(deploy) if "amazon-ecs-deploy-task-definition" in s.get("uses", "")
    )
    assert rollout["with"]["wait-for-service-stability"] is True
    assert rollout["with"]["service"] and rollout["with"]["cluster"]


def test_infra_plans_pull_requests_and_applies_main_behind_a_protected_environment() -> None:
    workflow = load("infra.yml")
    paths = workflow["on"]["pull_request"]["paths"]
    assert "ops/terraform/**" in paths
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["on"]["push"]["paths"] == paths
    assert workflow["defaults"]["run"]["working-directory"] == "ops/terraform"
    assert workflow["concurrency"]["cancel-in-progress"] is False

    jobs = workflow["jobs"]
    check = scripts(jobs["check"])
    assert "terraform fmt -check" in check and "terraform validate" in check
    assert "terraform init -backend=false" in check
    assert not assumes_role(jobs["check"]), "fmt and validate need no AWS access"

    plan = jobs["plan"]
    assert "if" not in plan, "pull requests and main are both planned"
    assert plan["needs"] == "check" and "environment" not in plan
    planning = scripts(plan)
    assert "terraform plan" in planning and "terraform apply" not in planning
    assert "-out=tfplan" in planning
    # The deployment's committed variables, passed explicitly; the running image wins over them.
    plan_step = next(s for s in steps(plan) if s.get("name") == "terraform plan")
    assert plan_step["env"]["VAR_FILE"] == "${{ vars.TF_VARS_FILE }}"
    assert '-var-file="${VAR_FILE}"' in plan_step["run"]
    assert plan_step["run"].index("-var-file") < plan_step["run"].index("container_image=")
    assert "describe-services" in planning and "describe-task-definition" in planning
    upload = next(s for s in steps(plan) if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert "ops/terraform/tfplan" in upload["with"]["path"]

    apply = jobs["apply"]
    assert apply["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert apply["environment"] == "production-infra"
    assert apply["needs"] == "plan", "the apply runs the plan job's saved plan"
    applying = scripts(apply)
    assert "terraform plan" not in applying, "no second, unseen plan"
    assert "terraform apply -no-color -input=false tfplan" in applying
    download = next(
        s for s in steps(apply) if s.get("uses", "").startswith("actions/download-artifact")
    )
    assert download["with"]["name"] == upload["with"]["name"]
    assert download["with"]["path"] == "ops/terraform"
    names = [s.get("uses", s.get("name", "")) for s in steps(apply)]
    assert names.index(download["uses"]) < names.index("terraform apply (the saved plan)")

    versions = {
        s["with"]["terraform_version"]
        for job in jobs.values()
        for s in steps(job)
        if s.get("uses", "").startswith("hashicorp/setup-terraform")
    }
    assert len(versions) == 1, "one Terraform version for check, plan and apply"


def test_infra_rolls_out_the_task_definition_terraform_registered_keeping_the_image() -> None:
    """The service ignores Terraform's task_definition (release.yml owns the image), so without
    an update-service after the apply a changed environment variable or CPU never ran."""
    apply = load("infra.yml")["jobs"]["apply"]
    names = [s.get("name", s.get("uses", "")) for s in steps(apply)]
    applied = names.index("terraform apply (the saved plan)")
    rollout_index = names.index("Roll out the task definition Terraform registered")
    assert rollout_index == applied + 1
    script = steps(apply)[rollout_index]["run"]
    assert "terraform output -raw task_definition_arn" in script
    update = next(line for line in script.splitlines() if "aws ecs update-service" in line)
    assert "--cluster" in update and "--service" in update
    assert '--task-definition "${wanted}"' in script
    assert "aws ecs wait services-stable" in script
    # Never an image rollback: the revision is rolled out only when it has the running image.
    compare = script.index('if [ "${running_image}" != "${wanted_image}" ]')
    assert compare < script.index("aws ecs update-service")
    assert "exit 1" in script[compare : script.index("aws ecs update-service")]
    # ...which the plan made sure of, by planning with the running image.
    plan_step = next(
        s for s in steps(load("infra.yml")["jobs"]["plan"]) if s.get("name") == "terraform plan"
    )
    assert '-var "container_image=${RUNNING_IMAGE}"' in plan_step["run"]


# Commits of the actions' releases, each found in several unrelated public repositories pinning
# `<action>@<sha> # <tag>` (the search tool's index; GitHub itself was out of reach).
VERIFIED_PINS = {
    "actions/checkout": ("11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "hashicorp/setup-terraform": ("b9cd54a3c349d3f38e8881555d616ced269862dd", "v3.1.2"),
    "aws-actions/configure-aws-credentials": ("e3dd6a429d7300a6a4c196c26e071d42e0343502", "v4.0.2"),
    "actions/upload-artifact": ("ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
    "actions/download-artifact": ("d3f86a106a0bac45b974a628896c90dbdf5c8093", "v4.3.0"),
    "aws-actions/amazon-ecr-login": ("062b18b96a7aff071d4dc91bc00c4c1a7945b076", "v2.0.1"),
    "docker/setup-buildx-action": ("b5ca514318bd6ebac0fb2aedd5d36ec1b5c232a2", "v3.10.0"),
    "docker/build-push-action": ("263435318d21b8e681c14492fe198d362a7d2c83", "v6.18.0"),
    # Most sources name this commit v0.29.0 (two name another release): the pin is the commit.
    "aquasecurity/trivy-action": ("18f2510ee396bbf400402947b394f2dd8c87dbb0", "v0.29.0"),
}
# No public source showed a release commit of these: left on their major tag for a human to pin.
NOT_YET_VERIFIED = {
    "aws-actions/amazon-ecs-render-task-definition",
    "aws-actions/amazon-ecs-deploy-task-definition",
}


@pytest.mark.parametrize("name", ALL)
def test_every_action_is_pinned_by_commit_with_its_tag_in_a_comment(name: str) -> None:
    """A tag can be moved to other code; a commit cannot. Each pin is the verified commit of
    the release its comment names; only the actions no source verified stay on a tag."""
    for line in (WORKFLOWS / name).read_text().splitlines():
        match = re.match(r"^\s*(?:- )?uses: ([^@\s]+)@(\S+)(?: # (\S+))?\s*$", line)
        if not match or match[1].startswith("./"):
            continue
        action, ref, comment = match[1], match[2], match[3]
        if action in NOT_YET_VERIFIED:
            assert re.fullmatch(r"v\d+", ref), line
            continue
        assert action in VERIFIED_PINS, f"{name}: {action} has no verified commit: {line}"
        sha, tag = VERIFIED_PINS[action]
        assert (ref, comment) == (sha, tag), f"{name}: {line.strip()}"


def test_deploy_and_apply_use_environments_of_their_own_that_the_roles_trust() -> None:
    deploy = load("release.yml")["jobs"]["deploy"]["environment"]
    apply = load("infra.yml")["jobs"]["apply"]["environment"]
    assert deploy != apply
    variables = (REPO / "ops" / "terraform" / "variables.tf").read_text()
    for variable, environment in (
        ("github_deploy_environment", deploy),
        ("github_apply_environment", apply),
    ):
        block = variables[variables.index(f'variable "{variable}"') :]
        assert re.search(rf'default\s*=\s*"{environment}"', block.split("\n}\n")[0]), variable


def test_a_critical_finding_stops_the_release_before_tagging_and_deploying() -> None:
    image = load("release.yml")["jobs"]["image"]
    names = [s.get("name", s.get("uses", "")) for s in steps(image)]
    scan_index = names.index("Stop on critical vulnerabilities")
    scan = steps(image)[scan_index]
    assert scan["uses"].startswith("aquasecurity/trivy-action@")
    assert scan["with"]["severity"] == "CRITICAL"
    assert scan["with"]["exit-code"] == "1", "a finding must fail the job"
    # The image scanned is the one by digest that is then tagged and deployed.
    assert "steps.build.outputs.digest" in scan["with"]["image-ref"]
    assert "steps.existing.outputs.digest" in scan["with"]["image-ref"]
    build = next(i for i, s in enumerate(steps(image)) if "build-push-action" in s.get("uses", ""))
    assert build < scan_index < names.index("Tag the image with its version")
    # The deploy needs the image job, so a failed scan never reaches ECS.
    assert load("release.yml")["jobs"]["deploy"]["needs"] == "image"

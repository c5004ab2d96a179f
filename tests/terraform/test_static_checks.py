"""fmt, validate and checkov over ops/terraform, all offline."""

from __future__ import annotations

import json
import os
import re
import subprocess

import hcl2

from tests.terraform import tf


def test_terraform_files_are_formatted(terraform):
    proc = subprocess.run(
        [terraform.binary, "fmt", "-check", "-recursive", "-diff", str(tf.MODULE)],
        env=terraform.env("fmt"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


def test_root_module_initializes_offline_and_validates(terraform, initialized_copy):
    workdir, env = initialized_copy
    proc = terraform.run(["validate", "-json"], workdir, env, timeout=120)
    report = json.loads(proc.stdout)
    assert report["valid"] is True, report
    assert report["error_count"] == 0
    assert report["warning_count"] == 0, report["diagnostics"]


def test_committed_root_module_has_no_test_plumbing():
    """The endpoint overrides live only in the tests' temporary copies."""
    for path in tf.MODULE.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        assert not path.name.endswith("override.tf"), path
        text = path.read_text()
        for plumbing in ("endpoints {", "skip_credentials_validation", "access_key", "secret_key"):
            assert plumbing not in text, f"{path}: {plumbing}"


def test_checkov_finds_no_failed_check(checkov_install, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BC_", "PRISMA_"))}
    env.update(
        {
            # Offline: no Prisma Cloud mapping download, no PyPI version check, and anything
            # that still tries the network hits a closed loopback port.
            "BC_SKIP_MAPPING": "TRUE",
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
            "HTTP_PROXY": tf.DEAD_PROXY,
            "HTTPS_PROXY": tf.DEAD_PROXY,
            "NO_PROXY": "",
            "CKV_CACHE_DIR": str(tmp_path),
        }
    )
    proc = subprocess.run(
        [
            str(checkov_install.wait()),
            "--directory",
            str(tf.MODULE),
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.stdout.strip(), f"checkov printed nothing:\n{proc.stderr[-4000:]}"
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    passed = sum(r["summary"]["passed"] for r in reports)
    parsing_errors = sum(r["summary"]["parsing_errors"] for r in reports)
    assert parsing_errors == 0, proc.stdout[-4000:]
    assert passed > 100, "checkov scanned far fewer resources than the stack holds"
    assert not failed, "\n".join(
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})" for c in failed
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_every_checkov_skip_gives_its_reason():
    skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")
    skips = []
    for path in tf.MODULE.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = skip.search(line)
            if match:
                skips.append((path.relative_to(tf.MODULE), number, match[1], match[2]))
    assert skips, "expected the documented skips (e.g. the plain-HTTP listener)"
    unexplained = [s for s in skips if not s[3] or len(s[3].split()) < 5]
    assert not unexplained, f"checkov skips without a reason: {unexplained}"


def test_the_provider_lock_file_is_committed_and_pins_the_aws_provider():
    """CI's plan and apply, and these tests (copy_module keeps the file), install the same
    provider build: init fails if the mirror's provider does not match these checksums."""
    lock = tf.MODULE / ".terraform.lock.hcl"
    assert lock.exists(), "run terraform init in ops/terraform and commit .terraform.lock.hcl"
    text = lock.read_text()
    block = re.search(
        r'provider "registry.terraform.io/hashicorp/aws" \{(.*?)\n\}', text, re.DOTALL
    )
    assert block, text
    version = re.search(r'version\s*=\s*"(\d+)\.(\d+)\.(\d+)"', block.group(1))
    assert version and int(version.group(1)) == 5, "versions.tf allows >= 5.60, < 6"
    assert (int(version.group(1)), int(version.group(2))) >= (5, 60)
    assert re.search(r'"h1:[A-Za-z0-9+/=]{44}"', block.group(1)), "no h1 checksum"
    # The repository root ignores lock files; this directory's .gitignore lets this one in.
    assert "!.terraform.lock.hcl" in (tf.MODULE / ".gitignore").read_text().splitlines()


def _plan(terraform, initialized_copy, *variables: str) -> tuple[int, str]:
    """``terraform plan`` offline with these ``-var`` settings: exit code and all it said."""
    workdir, env = initialized_copy
    argv = ["plan", "-no-color", "-input=false", "-refresh=false"]
    for variable in ("image_tag=1.0.0", "aws_region=us-east-1", *variables):
        argv += ["-var", variable]
    proc = subprocess.run(
        [terraform.binary, *argv],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_an_empty_bucket_admin_list_is_refused_at_plan_time(terraform, initialized_copy):
    """With no admin, the bucket policies would lock everybody out of the targets CSV (and out
    of a force_destroy teardown); the variable is required and must not be empty."""
    cidrs = 'alb_ingress_cidrs=["203.0.113.0/24"]'
    for extra, wanted in (
        (["bucket_admin_principal_arns=[]"], ["must list at least one role or user ARN"]),
        ([], ["No value for required variable", 'variable "bucket_admin_principal_arns"']),
    ):
        code, said = _plan(terraform, initialized_copy, cidrs, *extra)
        assert code != 0
        assert all(w in said for w in wanted), said[-3000:]


def test_who_may_reach_the_load_balancer_has_no_default(terraform, initialized_copy):
    """The page and /results expose every URL and its errors: with a load balancer (full
    profile), who may reach it must be an explicit choice, never what an unset variable means.
    The lean profile has no load balancer and needs none."""
    admins = 'bucket_admin_principal_arns=["arn:aws:iam::123456789012:role/ci"]'
    code, said = _plan(terraform, initialized_copy, admins, "profile=full")
    assert code != 0
    assert "Invalid value for variable" in said
    assert 'is required with profile = "full": who may reach the load balancer' in said
    code, said = _plan(terraform, initialized_copy, admins)
    assert "Invalid value for variable" not in said, said[-3000:]


def test_desired_count_takes_any_whole_number_and_several_tasks_need_sharding(
    terraform, initialized_copy
):
    """Tasks share the list (shard = "ecs", the default), so any count is valid; without
    sharding every task would probe every URL, so more than one is refused. The plan fails
    later here anyway (no AWS credentials offline): what matters is which variable errors it
    reports. The moto apply runs a real desired_count of 3."""
    required = (
        'alb_ingress_cidrs=["203.0.113.0/24"]',
        'bucket_admin_principal_arns=["arn:aws:iam::123456789012:role/ci"]',
    )
    for extra in (["desired_count=3"], ["desired_count=0"]):
        code, said = _plan(terraform, initialized_copy, *required, *extra)
        assert "Invalid value for variable" not in said, (extra, said[-3000:])
    for extra, wanted in (
        (["desired_count=1.5"], "desired_count must be a whole number"),
        (["desired_count=3", "shard=off"], 'With shard = "off" every task probes every URL'),
        (["shard=0/3"], 'shard must be "ecs" or "off"'),
    ):
        code, said = _plan(terraform, initialized_copy, *required, *extra)
        assert code != 0
        assert "Invalid value for variable" in said and wanted in said, (extra, said[-3000:])


REQUIRED = (
    "profile=full",
    'alb_ingress_cidrs=["203.0.113.0/24"]',
    'bucket_admin_principal_arns=["arn:aws:iam::123456789012:role/ci"]',
)
CERT = "certificate_arn=arn:aws:acm:us-east-1:123456789012:certificate/abc"
COGNITO = (
    'alb_authentication={type="cognito", cognito={'
    'user_pool_arn="arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_x",'
    'user_pool_client_id="c", user_pool_domain="upcheck"}}'
)


def test_a_public_load_balancer_needs_https_and_a_login(terraform, initialized_copy):
    """Private by default; internet-facing only with a certificate, an authenticate action and
    WAF. Offline the plan fails later anyway (no AWS): what counts is which variable errors."""
    public = "alb_internal=false"
    refused = "A public load balancer (alb_internal = false) needs HTTPS"
    for extra, wanted in (
        ([public], refused),
        ([public, CERT], refused),
        ([public, 'alb_authentication={type="oidc"}', CERT], "needs alb_authentication.oidc"),
        ([public, COGNITO], "ALB authentication runs on the HTTPS listener only"),
        ([public, COGNITO, CERT, "enable_waf=false"], "A public load balancer always has WAF"),
    ):
        code, said = _plan(terraform, initialized_copy, *REQUIRED, *extra)
        assert code != 0
        assert "Invalid value for variable" in said and wanted in said, (extra, said[-3000:])
    for extra in ([], [public, COGNITO, CERT], [CERT, "enable_waf=false"]):
        code, said = _plan(terraform, initialized_copy, *REQUIRED, *extra)
        assert "Invalid value for variable" not in said, (extra, said[-3000:])


def _skips() -> list[tuple[str, str, str, str]]:
    """(file, resource address, check id, reason) of every checkov skip in the module."""
    found = []
    for path in tf.MODULE.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        resource = ""
        for line in path.read_text().splitlines():
            block = re.match(r'^resource "([a-z0-9_]+)" "([a-z0-9_]+)"', line)
            if block:
                resource = f"{block[1]}.{block[2]}"
            match = re.search(r"#\s*checkov:skip=([A-Z0-9_]+):(.*)$", line)
            if match:
                found.append((str(path.relative_to(tf.MODULE)), resource, match[1], match[2]))
    return found


# Skips whose reason holds in every configuration of the stack (design decisions, not
# exposures): nothing in the variables can make them false.
HOLD_IN_EVERY_CONFIGURATION = {
    ("modules/private_bucket/main.tf", "aws_s3_bucket.this", "CKV_AWS_144"),
    ("modules/private_bucket/main.tf", "aws_s3_bucket.this", "CKV2_AWS_62"),
    ("modules/storage/main.tf", "aws_s3_bucket.logs", "CKV_AWS_18"),
    ("modules/storage/main.tf", "aws_s3_bucket.logs", "CKV_AWS_144"),
    ("modules/storage/main.tf", "aws_s3_bucket.logs", "CKV_AWS_145"),
    ("modules/storage/main.tf", "aws_s3_bucket.logs", "CKV2_AWS_62"),
    ("modules/load_balancer/main.tf", "aws_lb_target_group.this", "CKV_AWS_378"),
}


def _block(path: str, address: str) -> str:
    text = (tf.MODULE / path).read_text()
    rtype, name = address.split(".")
    start = text.index(f'resource "{rtype}" "{name}" {{')
    end = text.index("\n}\n", start)
    return text[start:end]


def test_every_checkov_skip_is_conditional_and_true():
    """No skip silences a check in a configuration where its reason is false: either the reason
    holds whatever the variables say (listed above), or the skipped exposure exists only under
    the condition the reason names, which this test reads from the HCL."""
    conditional = {}
    for path, address, check, reason in _skips():
        if (path, address, check) in HOLD_IN_EVERY_CONFIGURATION:
            continue
        conditional[(path, address, check)] = reason
    lb = "modules/load_balancer/main.tf"
    assert set(conditional) == {
        (lb, "aws_lb_listener.http", "CKV_AWS_2"),
        (lb, "aws_lb_listener.http", "CKV_AWS_103"),
        (lb, "aws_lb_listener.http", "CKV2_AWS_20"),
        (lb, "aws_lb.this", "CKV2_AWS_20"),
        ("modules/ci/main.tf", "aws_iam_role_policy_attachment.apply_admin", "CKV_AWS_274"),
    }, conditional
    # The apply role's administrator policy exists only when the CI roles are asked for, and
    # that role trusts the protected apply environment's subject alone.
    main = (tf.MODULE / "main.tf").read_text()
    ci_call = main[main.index('module "ci" {') :]
    assert 'count  = var.github_repository == "" ? 0 : 1' in ci_call
    ci = (tf.MODULE / "modules/ci/main.tf").read_text()
    assert 'apply   = { test = "StringEquals", values = ["${local.sub}:environment:' in ci
    # The plain-HTTP listener exists only without a certificate...
    plain = _block(lb, "aws_lb_listener.http")
    assert "count = local.https ? 0 : 1" in plain
    https = re.search(r"^\s*https\s*=\s*(.*)$", (tf.MODULE / lb).read_text(), re.M)
    assert https and https[1] == 'var.domain_name != "" || var.certificate_arn != ""'
    # ...which the root module allows on an internal ALB only.
    (internal,) = [v["alb_internal"] for v in parse_variables() if "alb_internal" in v]
    assert internal["default"] is True
    (check,) = internal["validation"]
    assert check["condition"].startswith(
        '${var.alb_internal || ((var.domain_name != "" || var.certificate_arn != "")'
    )
    # Every other port-80 listener redirects to HTTPS (the aws_lb skip of CKV2_AWS_20).
    redirect = _block(lb, "aws_lb_listener.http_redirect")
    assert "count = local.https ? 1 : 0" in redirect and 'protocol    = "HTTPS"' in redirect
    listeners = re.findall(
        r'^resource "aws_lb_listener" "([a-z_]+)"', (tf.MODULE / lb).read_text(), re.M
    )
    assert sorted(listeners) == ["http", "http_redirect", "https"]


def parse_variables() -> list[dict]:
    with open(tf.MODULE / "variables.tf") as handle:
        return hcl2.load(handle)["variable"]

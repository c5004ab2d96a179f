"""Running Terraform offline and safely from the tests.

Everything here exists so that the Terraform tests never reach beyond loopback:
- providers come from a local filesystem mirror through a test-written CLI configuration
  (the committed root module knows nothing about it);
- a run against moto gets a generated ``override.tf`` that points every AWS service the stack
  uses at the emulator, and :func:`services_used` proves that list complete before any apply;
- as a second line of defence every subprocess gets HTTP(S)_PROXY set to a closed loopback
  port, so a request for an endpoint we forgot dies on 127.0.0.1 instead of leaving the host.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "ops" / "terraform"
# The product contract lives outside this repository, in ../shared beside the checkout on this
# project's CI machines. UPCHECK_SPEC points elsewhere; UPCHECK_SPEC_OPTIONAL=true (set only by
# .github/workflows/ci.yml, where no copy exists) lets the SPEC-contract tests skip under CI=true.
SPEC = Path(os.environ.get("UPCHECK_SPEC") or REPO.parent / "shared" / "SPEC.md")
SPEC_OPTIONAL = os.environ.get("UPCHECK_SPEC_OPTIONAL") == "true"

# Where this project's machines keep the provider mirror, most likely first; each is searched
# to a fixed depth only. TF_PROVIDER_MIRROR overrides the search.
MIRROR_ROOTS = (
    "/opt/tf-plugins",
    "/usr/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/opt/*",
    "/usr/local/share/*",
)

# A loopback port nothing listens on (discard): the proxy of last resort.
DEAD_PROXY = "http://127.0.0.1:9"

# Which provider endpoint serves each resource or data source type, by longest type prefix.
# A type that matches nothing fails the safety check, so a new kind of resource cannot slip
# into the stack without the test routing it to moto.
ENDPOINT_FOR_PREFIX = {
    "aws_acm_": "acm",
    "aws_budgets_": "budgets",
    "aws_prometheus_": "amp",
    "aws_cloudwatch_metric_alarm": "cloudwatch",
    "aws_cloudwatch_dashboard": "cloudwatch",
    "aws_cloudwatch_log_": "logs",
    "aws_vpc": "ec2",
    "aws_default_security_group": "ec2",
    "aws_security_group": "ec2",
    "aws_subnet": "ec2",
    "aws_internet_gateway": "ec2",
    "aws_route_table": "ec2",
    "aws_route_table_association": "ec2",
    "aws_route": "ec2",
    "aws_eip": "ec2",
    "aws_nat_gateway": "ec2",
    "aws_flow_log": "ec2",
    "aws_availability_zones": "ec2",
    "aws_ecr_": "ecr",
    "aws_ecs_": "ecs",
    "aws_lb": "elbv2",
    "aws_iam_role": "iam",
    "aws_iam_openid_connect_provider": "iam",
    "aws_kms_": "kms",
    "aws_route53_": "route53",
    "aws_s3_": "s3",
    "aws_sns_": "sns",
    "aws_caller_identity": "sts",
    "aws_wafv2_": "wafv2",
}
# Types the provider computes locally, without any API call.
LOCAL_TYPES = {"aws_iam_policy_document", "aws_partition", "aws_region", "aws_elb_service_account"}
# Always routed: the provider itself may call these (credentials, account id).
ALWAYS_ROUTED = {"sts", "iam"}


# A filesystem mirror in either layout Terraform reads: unpacked (what this project's machines
# hold: <version>/<os_arch>/terraform-provider-aws_v*) or packed (what `terraform providers
# mirror` writes, as the GitHub workflow does: terraform-provider-aws_<version>_<os_arch>.zip).
MIRROR_LAYOUTS = (("*", "*", "terraform-provider-aws*"), ("terraform-provider-aws_*.zip",))


def find_provider_mirror(roots: list[str]) -> Path | None:
    """The first root holding ``registry.terraform.io/hashicorp/aws`` in either layout."""
    for root in roots:
        for base in sorted(glob.glob(os.path.expanduser(root))):
            aws = os.path.join(base, "registry.terraform.io", "hashicorp", "aws")
            if any(glob.glob(os.path.join(aws, *layout)) for layout in MIRROR_LAYOUTS):
                return Path(base)
    return None


def need_provider_mirror() -> Path:
    """The directory holding ``registry.terraform.io/hashicorp/aws/...`` (see tests/support.py
    ``need_binary`` for the skip-locally, fail-in-CI rule, applied here to a directory)."""
    override = os.environ.get("TF_PROVIDER_MIRROR")
    found = find_provider_mirror([override] if override else list(MIRROR_ROOTS))
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("no local mirror of hashicorp/aws (terraform-provider-aws*) was found")
    pytest.skip("no local mirror of hashicorp/aws was found")


def write_cli_config(directory: Path, mirror: Path) -> Path:
    """A Terraform CLI configuration that installs providers from the mirror only."""
    path = directory / "terraform.tfrc"
    path.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n"
    )
    return path


def base_env(cli_config: Path, data_dir: Path) -> dict[str, str]:
    """Environment for every terraform run: offline, no real AWS identity, no telemetry."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_")) and k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY"}
    }
    empty = data_dir / "no-aws-config"
    env.update(
        {
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_DATA_DIR": str(data_dir),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def run(
    terraform: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run terraform, bounded in time; fail the test with its output if it fails."""
    # Flags go right after the subcommand: terraform stops parsing flags at a positional one.
    colourless = [] if args[0] in {"fmt", "state"} else ["-no-color"]
    command = [terraform, args[0], *colourless, *args[1:]]
    proc = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"terraform {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout (tail)\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def copy_module(destination: Path) -> Path:
    """A copy of ops/terraform without local state or caches, to init and run in.

    The committed .terraform.lock.hcl comes along, so every init checks the mirror's provider
    against the version and checksum production uses."""
    # The root module reads ../prometheus (the alert rules and the Alertmanager inhibit rules
    # for AMP), so the copy keeps it beside itself.
    shutil.copytree(
        MODULE.parent / "prometheus",
        destination.parent / "prometheus",
        ignore=shutil.ignore_patterns("tests"),
        dirs_exist_ok=True,
    )
    shutil.copytree(
        MODULE,
        destination,
        ignore=shutil.ignore_patterns(
            ".terraform", "*.tfstate*", "override.tf", "*_override.tf", "tfplan", "plan.txt"
        ),
    )
    return destination


def services_used(module_dir: Path) -> set[str]:
    """Endpoint keys of every AWS service a resource or data source in the tree calls.

    Fails (rather than guesses) on a type the table above does not know.
    """
    declared = re.compile(r'^\s*(resource|data)\s+"(aws_[a-z0-9_]+)"', re.MULTILINE)
    prefixes = sorted(ENDPOINT_FOR_PREFIX, key=len, reverse=True)
    services: set[str] = set()
    unknown: set[str] = set()
    for tf in module_dir.rglob("*.tf"):
        if ".terraform" in tf.parts:
            continue
        for _, rtype in declared.findall(tf.read_text()):
            if rtype in LOCAL_TYPES:
                continue
            match = next((p for p in prefixes if rtype.startswith(p)), None)
            if match is None:
                unknown.add(rtype)
            else:
                services.add(ENDPOINT_FOR_PREFIX[match])
    if unknown:
        pytest.fail(
            f"no moto endpoint is known for {sorted(unknown)}; add them to ENDPOINT_FOR_PREFIX"
        )
    return services | ALWAYS_ROUTED


def moto_override(endpoint_url: str, services: set[str], region: str) -> str:
    """Provider settings that send every listed service to moto (written as override.tf)."""
    lines = "\n".join(f'    {s} = "{endpoint_url}"' for s in sorted(services))
    return f"""# Generated by tests/terraform: route the AWS provider to moto on loopback.
provider "aws" {{
  region                      = "{region}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {{
{lines}
  }}
}}
"""


def assert_only_loopback_endpoints(override_text: str, services: set[str]) -> None:
    """Refuse to run unless every service is routed, and every route stays on 127.0.0.1."""
    routed = dict(re.findall(r'^\s+([a-z0-9]+)\s*=\s*"([^"]+)"\s*$', override_text, re.MULTILINE))
    endpoints = {k: v for k, v in routed.items() if k in services or v.startswith("http")}
    missing = services - set(endpoints)
    assert not missing, f"services not routed to moto: {sorted(missing)}"
    outside = {k: v for k, v in endpoints.items() if not v.startswith("http://127.0.0.1:")}
    assert not outside, f"endpoints not on loopback: {outside}"

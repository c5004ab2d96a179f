"""The rules that decide whether the Terraform tests run, skip or fail: where the provider
mirror is found, and what a missing SPEC.md means under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform import test_hcl_contract, tf


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_an_unpacked_mirror_is_found(tmp_path: Path) -> None:
    # The layout this project's machines hold under /opt/tf-plugins.
    aws = tmp_path / "m/registry.terraform.io/hashicorp/aws"
    _touch(aws / "5.100.0/linux_amd64/terraform-provider-aws_v5.100.0_x5")
    assert tf.find_provider_mirror([str(tmp_path / "m")]) == tmp_path / "m"


def test_a_packed_mirror_from_terraform_providers_mirror_is_found(tmp_path: Path) -> None:
    # The layout `terraform providers mirror` writes, as .github/workflows/ci.yml does.
    aws = tmp_path / "m/registry.terraform.io/hashicorp/aws"
    _touch(aws / "terraform-provider-aws_5.100.0_linux_amd64.zip")
    _touch(aws / "index.json")
    assert tf.find_provider_mirror([str(tmp_path / "m")]) == tmp_path / "m"


def test_a_folder_without_the_aws_provider_is_not_a_mirror(tmp_path: Path) -> None:
    _touch(tmp_path / "m/registry.terraform.io/hashicorp/random/terraform-provider-random_3.zip")
    assert tf.find_provider_mirror([str(tmp_path / "m")]) is None


def test_a_missing_spec_fails_under_ci_unless_declared_optional(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tf, "SPEC", tmp_path / "no-SPEC.md")
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(tf, "SPEC_OPTIONAL", False)
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        test_hcl_contract.spec_text()
    # GitHub's job has no ../shared: there the contract tests skip and say why.
    monkeypatch.setattr(tf, "SPEC_OPTIONAL", True)
    with pytest.raises(pytest.skip.Exception, match="lives outside this repository"):
        test_hcl_contract.spec_text()


def test_the_spec_path_can_be_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "SPEC.md"
    spec.write_text("| `--targets` | `UPCHECK_TARGETS` |\n")
    monkeypatch.setattr(tf, "SPEC", spec)
    assert test_hcl_contract.spec_text() == spec.read_text()

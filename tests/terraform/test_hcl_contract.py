"""What the HCL promises, read straight from the .tf files with python-hcl2.

These tests pin the contract with SPEC.md (env var names, the health endpoint) and the security
posture (least-privilege roles, private subnets behind NAT) without running Terraform.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import hcl2
import pytest

from tests.terraform import tf

# The variables the task definition must set (the SPEC's configuration table minus the flags
# that make no sense in the container: --ca-file is optional, --once is not a daemon mode).
REQUIRED_ENV = {
    "UPCHECK_TARGETS",
    "UPCHECK_LISTEN",
    "UPCHECK_INTERVAL",
    "UPCHECK_TIMEOUT",
    "UPCHECK_CONCURRENCY",
    "UPCHECK_RELOAD_INTERVAL",
    "UPCHECK_RESULTS",
    "UPCHECK_PUBLISH_INTERVAL",
    "UPCHECK_CLOUDWATCH_NAMESPACE",
    "UPCHECK_CLOUDWATCH_URL_METRICS",
    "UPCHECK_APP_NAME",
    "UPCHECK_SHARD",
}


@cache
def parse(relative: str) -> dict:
    with open(tf.MODULE / relative) as handle:
        return hcl2.load(handle)


def blocks(doc: dict, kind: str, rtype: str) -> dict[str, dict]:
    """All `kind "rtype" "name" {}` blocks of a parsed file, by name."""
    found: dict[str, dict] = {}
    for entry in doc.get(kind, []):
        for name, body in entry.get(rtype, {}).items():
            found[name] = body
    return found


def merged_locals(doc: dict) -> dict:
    result: dict = {}
    for entry in doc.get("locals", []):
        result.update(entry)
    return result


def spec_text() -> str:
    if tf.SPEC.exists():
        return tf.SPEC.read_text()
    if os.environ.get("CI") == "true" and not tf.SPEC_OPTIONAL:
        pytest.fail(f"{tf.SPEC} is missing; CI lays ../shared beside the clone")
    pytest.skip(
        f"{tf.SPEC} is missing: SPEC.md lives outside this repository (set UPCHECK_SPEC to a "
        "copy); .ci/run on this project's CI machines requires it"
    )


def spec_env_names() -> set[str]:
    return set(re.findall(r"^\|\s*`--[a-z-]+`\s*\|\s*`(UPCHECK_[A-Z_]+)`", spec_text(), re.M))


# ---------------------------------------------------------------------------------------------
# Task definition vs SPEC.md
# ---------------------------------------------------------------------------------------------
def test_spec_table_is_parsed():
    names = spec_env_names()
    assert names >= REQUIRED_ENV, f"SPEC.md no longer lists {sorted(REQUIRED_ENV - names)}"


def test_task_definition_sets_every_spec_env_var_and_no_other():
    service = parse("modules/service/main.tf")
    environment = merged_locals(service)["environment"]
    assert set(environment) == REQUIRED_ENV
    assert set(environment) <= spec_env_names(), "a name the SPEC does not define"
    container = merged_locals(service)["daemon_container"]
    assert "local.environment" in container["environment"], "env must come from the checked map"
    task = blocks(service, "resource", "aws_ecs_task_definition")["this"]
    assert "local.daemon_container" in task["container_definitions"]


def test_env_values_point_at_the_stack_buckets():
    root = merged_locals(parse("main.tf"))
    service_call = parse("main.tf")["module"]
    call = next(m["service"] for m in service_call if "service" in m)
    assert call["targets_uri"] == "s3://${local.targets_bucket}/${var.targets_key}"
    assert call["results_uri"] == "s3://${local.results_bucket}/${local.results_key}"
    assert root["results_key"] == "${var.results_prefix}/results.json"
    # SPEC.md "Sharding": each member's part lives in <results>.parts/<member>.json.
    assert root["results_parts_prefix"] == "${local.results_key}.parts/"
    assert "targets" in root["targets_bucket"] and "results" in root["results_bucket"]
    env = merged_locals(parse("modules/service/main.tf"))["environment"]
    assert env["UPCHECK_TARGETS"] == "${var.targets_uri}"
    assert env["UPCHECK_RESULTS"] == "${var.results_uri}"
    assert env["UPCHECK_LISTEN"] == "0.0.0.0:${local.container_port}"


def _root_variables() -> dict[str, dict]:
    variables: dict[str, dict] = {}
    for entry in parse("variables.tf")["variable"]:
        variables.update(entry)
    return variables


def test_sharding_across_the_services_tasks_is_on_by_default():
    shard = _root_variables()["shard"]
    assert shard["default"] == "ecs"
    assert shard["type"] == "string"
    call = next(m["service"] for m in parse("main.tf")["module"] if "service" in m)
    assert call["shard"] == "${var.shard}"
    env = merged_locals(parse("modules/service/main.tf"))["environment"]
    assert env["UPCHECK_SHARD"] == "${var.shard}"
    # The SPEC's flag is ecs-aware: the value Terraform passes must be one it documents.
    assert re.search(r"^\|\s*`--shard`\s*\|\s*`UPCHECK_SHARD`.*`ecs`", spec_text(), re.M)


def test_desired_count_is_any_whole_number_and_zero_still_pauses():
    desired = _root_variables()["desired_count"]
    (check,) = desired["validation"]
    assert "contains(" not in check["condition"], "no fixed list of allowed counts any more"
    assert "floor(var.desired_count) == var.desired_count" in check["condition"]
    assert "var.desired_count >= 0" in check["condition"]
    # The task-count alarm follows the count and is left out while paused (0).
    alarm = blocks(parse("modules/monitoring/main.tf"), "resource", "aws_cloudwatch_metric_alarm")
    running = alarm["running_tasks"]
    assert running["count"] == "${var.desired_count > 0 ? 1 : 0}"
    assert running["threshold"] == "${var.desired_count}"
    assert running["comparison_operator"] == "LessThanThreshold"
    # Silence is no failure while paused: the silence alarm asks ECS (and, without its figure,
    # this desired_count) whether tasks are wanted, and missing data breaches only if they are.
    silent = alarm["silent"]
    assert silent["treat_missing_data"] == '${var.desired_count > 0 ? "breaching" : "notBreaching"}'
    (expression,) = [q for q in silent["metric_query"] if q.get("expression")]
    assert expression["expression"] == (
        "IF(FILL(desired, ${var.desired_count}) > 0 AND FILL(sent, 0) < 1, 1, 0)"
    )
    calls = parse("main.tf")["module"]
    for name in ("service", "monitoring"):
        call = next(m[name] for m in calls if name in m)
        assert call["desired_count"] == "${var.desired_count}", name


def test_deployments_keep_every_task_until_its_replacement_runs():
    """Several tasks share the list, so a rollout must never drop below the desired count; the
    old and new tasks overlap (up to 200 %) and split the list between them meanwhile."""
    service = blocks(parse("modules/service/main.tf"), "resource", "aws_ecs_service")["this"]
    assert service["desired_count"] == "${var.desired_count}"
    assert service["deployment_minimum_healthy_percent"] == 100
    assert service["deployment_maximum_percent"] == 200
    (breaker,) = service["deployment_circuit_breaker"]
    assert breaker == {"enable": True, "rollback": True}


def test_health_checks_use_the_spec_health_path():
    assert re.search(r"^\|\s*`GET /health`", spec_text(), re.M), "SPEC.md lost GET /health"
    service = merged_locals(parse("modules/service/main.tf"))
    assert service["health_check_path"] == "/health"
    assert service["container_port"] == 8080
    command = service["health_check_command"]
    assert command[:3] == ["CMD", "python", "-c"], "the check must need nothing but Python"
    assert "urllib.request" in command[3]
    assert "http://127.0.0.1:${local.container_port}${local.health_check_path}" in command[3]
    assert service["daemon_container"]["healthCheck"]["command"] == "${local.health_check_command}"

    calls = parse("main.tf")["module"]
    lb_call = next(m["load_balancer"] for m in calls if "load_balancer" in m)
    assert lb_call["health_check_path"] == "/health"
    assert lb_call["container_port"] == 8080
    target_group = blocks(parse("modules/load_balancer/main.tf"), "resource", "aws_lb_target_group")
    assert target_group["this"]["health_check"][0]["path"] == "${var.health_check_path}"


def test_stop_timeout_covers_the_ten_second_sigterm_flush():
    service = merged_locals(parse("modules/service/main.tf"))
    assert service["stop_timeout"] > 10
    assert service["daemon_container"]["stopTimeout"] == "${local.stop_timeout}"


def test_documented_image_builds_target_the_tasks_cpu_architecture():
    task = blocks(parse("modules/service/main.tf"), "resource", "aws_ecs_task_definition")["this"]
    assert task["runtime_platform"][0]["cpu_architecture"] == "X86_64"
    builds = [
        line
        for readme in (tf.MODULE / "README.md", tf.REPO / "README.md")
        for line in readme.read_text().splitlines()
        if re.search(r"\bdocker (buildx )?build\b", line)
    ]
    assert builds, "the operator guide shows how to build the image"
    for line in builds:
        assert "--platform linux/amd64" in line, f"an arm64 machine would build arm64: {line}"


def test_containers_run_hardened():
    service = merged_locals(parse("modules/service/main.tf"))
    for name in ("daemon_container", "adot_container"):
        container = service[name]
        assert container["readonlyRootFilesystem"] is True, name
        assert container["user"] == "${var.container_user}", name
        assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"], name
    (user_var,) = [
        v["container_user"] for v in parse("variables.tf")["variable"] if "container_user" in v
    ]
    assert not re.match(r"^0(:|$)", user_var["default"])
    assert "root" in user_var["validation"][0]["error_message"]


# ---------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------
def _statements(document: dict) -> list[dict]:
    statements = list(document.get("statement", []))
    for dynamic in document.get("dynamic", []):
        statements.extend(dynamic["statement"]["content"])
    return statements


def test_no_role_policy_grants_a_wildcard_action():
    for relative in ("modules/iam/main.tf", "modules/network/main.tf"):
        documents = blocks(parse(relative), "data", "aws_iam_policy_document")
        for name, document in documents.items():
            for statement in _statements(document):
                if statement.get("effect", "Allow") != "Allow":
                    continue
                for action in statement["actions"]:
                    assert "*" not in action, f"{relative} {name}: {action}"


def test_task_role_is_scoped_to_the_two_buckets_the_key_and_the_namespace():
    iam = parse("modules/iam/main.tf")
    local = merged_locals(iam)
    assert local["targets_object_arn"] == (
        "arn:${var.partition}:s3:::${var.targets_bucket}/${var.targets_key}"
    )
    assert local["results_bucket_arn"] == "arn:${var.partition}:s3:::${var.results_bucket}"
    assert local["results_object_arns"] == [
        "${local.results_bucket_arn}/${var.results_key}",
        # the page is named after the results file (daemon/outputs/results_file.py page_name)
        '${local.results_bucket_arn}/${trimsuffix(var.results_key, ".json")}.html',
    ]

    statements = {
        s["sid"]: s for s in _statements(blocks(iam, "data", "aws_iam_policy_document")["task"])
    }
    allowed_resources = {
        "${local.targets_object_arn}",
        "${local.results_object_arns}",
        "${local.parts_arn_match}",
        "${local.results_bucket_arn}",
        "${local.tasks_arn_match}",
        "${var.kms_key_arn}",
        "${statement.value}",  # the AMP workspace, see below
        "*",
    }
    # Statements whose action cannot be scoped by resource, each with the condition that scopes it.
    scoped_by_condition = {
        ("cloudwatch:PutMetricData",): ("StringEquals", "cloudwatch:namespace"),
        ("ecs:ListTasks",): ("ArnEquals", "ecs:cluster"),
    }
    for sid, statement in statements.items():
        resources = statement["resources"]
        resources = [resources] if isinstance(resources, str) else resources
        assert set(resources) <= allowed_resources, sid
        if "*" in resources:
            (condition,) = statement["condition"]
            wanted = scoped_by_condition[tuple(statement["actions"])]
            assert (condition["test"], condition["variable"]) == wanted, sid

    assert statements["ReadTheTargetsFile"]["actions"] == ["s3:GetObject"]
    assert statements["ReadTheTargetsFile"]["resources"] == ["${local.targets_object_arn}"]
    assert set(statements["WriteAndPresignResults"]["actions"]) == {"s3:PutObject", "s3:GetObject"}
    assert statements["WriteAndPresignResults"]["resources"] == "${local.results_object_arns}"
    (namespace,) = statements["PublishMetricsToOneNamespace"]["condition"]
    assert namespace["values"] == ["${var.cloudwatch_namespace}"]
    kms = statements["UseTheBucketKeyThroughS3Only"]
    assert kms["condition"][0]["variable"] == "kms:ViaService"
    amp = statements["RemoteWriteToTheAmpWorkspace"]
    assert amp["actions"] == ["aps:RemoteWrite"]

    dynamics = {
        d["statement"]["content"][0]["sid"]: d["statement"]["for_each"]
        for d in blocks(iam, "data", "aws_iam_policy_document")["task"]["dynamic"]
    }
    assert dynamics.pop("RemoteWriteToTheAmpWorkspace").startswith("${var.enable_amp ? [")
    # Everything sharding needs exists only with shard = "ecs".
    assert local["sharded"] == '${var.shard == "ecs"}'
    assert set(dynamics) == {
        "WriteAndReadShardParts",
        "ListShardParts",
        "ListTheTasksOfThisCluster",
        "DescribeTheTasksOfThisCluster",
    }
    assert all(f.startswith("${local.sharded ? [") for f in dynamics.values()), dynamics

    role_policies = blocks(iam, "resource", "aws_iam_role_policy")
    assert role_policies["task"]["policy"] == "${data.aws_iam_policy_document.task.json}"
    assert not blocks(iam, "resource", "aws_iam_role_policy_attachment"), "no managed policies"


def test_task_role_lists_and_describes_the_tasks_of_its_own_cluster_only():
    iam = parse("modules/iam/main.tf")
    local = merged_locals(iam)
    statements = {
        s["sid"]: s for s in _statements(blocks(iam, "data", "aws_iam_policy_document")["task"])
    }
    cluster = "arn:${var.partition}:ecs:${var.region}:${var.account_id}:cluster/${var.cluster_name}"
    assert local["cluster_arn"] == cluster
    assert local["tasks_arn_match"] == (
        "arn:${var.partition}:ecs:${var.region}:${var.account_id}:task/${var.cluster_name}/*"
    )
    for sid, action, resources in (
        ("ListTheTasksOfThisCluster", "ecs:ListTasks", ["*"]),
        ("DescribeTheTasksOfThisCluster", "ecs:DescribeTasks", ["${local.tasks_arn_match}"]),
    ):
        statement = statements[sid]
        assert statement["actions"] == [action], sid
        assert statement["resources"] == resources, sid
        (condition,) = statement["condition"]
        assert condition == {
            "test": "ArnEquals",
            "variable": "ecs:cluster",
            "values": ["${local.cluster_arn}"],
        }, sid

    # The name IAM builds the ARN from is the one the service module gives its cluster.
    root = merged_locals(parse("main.tf"))
    assert root["cluster_name"] == "${var.name}"
    calls = parse("main.tf")["module"]
    assert next(m["iam"] for m in calls if "iam" in m)["cluster_name"] == "${local.cluster_name}"
    assert next(m["service"] for m in calls if "service" in m)["name"] == "${var.name}"
    ecs_cluster = blocks(parse("modules/service/main.tf"), "resource", "aws_ecs_cluster")["this"]
    assert ecs_cluster["name"] == "${var.name}"


def test_task_role_reaches_the_results_parts_by_their_prefix_only():
    iam = parse("modules/iam/main.tf")
    local = merged_locals(iam)
    statements = {
        s["sid"]: s for s in _statements(blocks(iam, "data", "aws_iam_policy_document")["task"])
    }
    assert local["parts_arn_match"] == "${local.results_bucket_arn}/${var.results_parts_prefix}*"
    parts = statements["WriteAndReadShardParts"]
    assert set(parts["actions"]) == {"s3:PutObject", "s3:GetObject"}
    assert parts["resources"] == ["${local.parts_arn_match}"]
    listing = statements["ListShardParts"]
    assert listing["actions"] == ["s3:ListBucket"]
    assert listing["resources"] == ["${local.results_bucket_arn}"]
    (condition,) = listing["condition"]
    assert condition == {
        "test": "StringLike",
        "variable": "s3:prefix",
        "values": ["${var.results_parts_prefix}*"],
    }
    call = next(m["iam"] for m in parse("main.tf")["module"] if "iam" in m)
    assert call["results_key"] == "${local.results_key}"
    assert call["results_parts_prefix"] == "${local.results_parts_prefix}"


def test_parts_left_behind_by_replaced_tasks_expire():
    storage = parse("modules/storage/main.tf")
    results = next(m["results"] for m in storage["module"] if "results" in m)
    # python-hcl2 renders the map key oddly; the moto apply checks the real rule (one day).
    expire = results["expire_prefixes"]
    assert expire.startswith('${var.results_parts_prefix == "" ? {} : {'), expire
    assert expire.endswith("(var.results_parts_prefix)}': 1}}"), expire
    call = next(m["storage"] for m in parse("main.tf")["module"] if "storage" in m)
    assert call["results_parts_prefix"] == (
        '${var.shard == "ecs" ? local.results_parts_prefix : ""}'
    )
    lifecycle = blocks(
        parse("modules/private_bucket/main.tf"), "resource", "aws_s3_bucket_lifecycle_configuration"
    )["this"]
    (dynamic,) = lifecycle["dynamic"]
    rule = dynamic["rule"]
    assert rule["for_each"] == "${var.expire_prefixes}"
    (content,) = rule["content"]
    assert content["filter"] == [{"prefix": "${rule.key}"}]
    assert content["expiration"] == [{"days": "${rule.value}"}]


def test_bucket_policies_refuse_plain_http_and_foreign_principals():
    bucket = blocks(parse("modules/private_bucket/main.tf"), "data", "aws_iam_policy_document")
    statements = {s["sid"]: s for s in bucket["this"]["statement"]}
    tls = statements["DenyPlainHttp"]
    assert tls["effect"] == "Deny" and tls["condition"][0]["variable"] == "aws:SecureTransport"
    others = statements["DenyObjectAccessToAllButTheListedPrincipals"]
    assert others["effect"] == "Deny"
    assert others["condition"][0]["variable"] == "aws:PrincipalArn"
    storage = parse("modules/storage/main.tf")
    principals = merged_locals(storage)["object_principals"]
    assert principals.startswith("${concat(") and "var.task_role_arn" in principals


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
def test_every_subnet_is_associated_with_a_route_table():
    network = parse("modules/network/main.tf")
    subnets = blocks(network, "resource", "aws_subnet")
    associations = blocks(network, "resource", "aws_route_table_association")
    assert set(subnets) == {"public", "private"}
    for name in subnets:
        covering = [
            a
            for a in associations.values()
            if a.get("for_each") == f"${{aws_subnet.{name}}}"
            and a["subnet_id"] == "${each.value.id}"
        ]
        assert covering, f"aws_subnet.{name} has subnets without a route table association"


def test_private_subnets_route_out_through_nat_only_and_lean_has_no_nat():
    network = parse("modules/network/main.tf")
    private = blocks(network, "resource", "aws_subnet")["private"]
    assert "map_public_ip_on_launch" not in private or private["map_public_ip_on_launch"] is False
    routes = blocks(network, "resource", "aws_route")
    assert routes["private_nat"]["for_each"] == "${var.nat_gateway ? aws_route_table.private : {}}"
    assert "aws_nat_gateway.this" in routes["private_nat"]["nat_gateway_id"]
    assert "gateway_id" not in routes["private_nat"]
    association = blocks(network, "resource", "aws_route_table_association")["private"]
    assert association["route_table_id"] == "${aws_route_table.private[each.key].id}"
    assert merged_locals(network)["nat_azs"].startswith("${var.nat_gateway ? ")

    # Full: private subnets, no public IP. Lean: the public subnets and a public IP, no NAT.
    root = merged_locals(parse("main.tf"))
    assert root["lean"] == '${var.profile == "lean"}'
    calls = parse("main.tf")["module"]
    assert next(m["network"] for m in calls if "network" in m)["nat_gateway"] == "${!local.lean}"
    call = next(m["service"] for m in calls if "service" in m)
    assert call["subnet_ids"] == (
        "${local.lean ? module.network.public_subnet_ids : module.network.private_subnet_ids}"
    )
    assert call["assign_public_ip"] == "${local.lean}"
    service = blocks(parse("modules/service/main.tf"), "resource", "aws_ecs_service")["this"]
    (net,) = service["network_configuration"]
    assert net["assign_public_ip"] == "${var.assign_public_ip}"
    assert net["subnets"] == "${var.subnet_ids}"


def test_only_the_load_balancer_may_reach_the_tasks():
    service = parse("modules/service/main.tf")
    ingress = blocks(service, "resource", "aws_vpc_security_group_ingress_rule")
    assert set(ingress) == {"task_from_alb"}
    rule = ingress["task_from_alb"]
    # Without a load balancer (lean, tasks with public IPs) there is no ingress rule at all.
    assert rule["count"] == "${var.load_balanced ? 1 : 0}"
    assert rule["referenced_security_group_id"] == "${var.alb_security_group}"
    assert "cidr_ipv4" not in rule
    assert rule["from_port"] == rule["to_port"] == "${local.container_port}"


# ---------------------------------------------------------------------------------------------
# Module hygiene
# ---------------------------------------------------------------------------------------------
def _variable_files() -> list[Path]:
    return [tf.MODULE / "variables.tf", *sorted((tf.MODULE / "modules").glob("*/variables.tf"))]


def test_every_variable_has_a_type_and_a_description():
    for path in _variable_files():
        for entry in parse(str(path.relative_to(tf.MODULE)))["variable"]:
            for name, body in entry.items():
                assert body.get("type"), f"{path}: {name} has no type"
                assert len(body.get("description", "")) > 5, f"{path}: {name} has no description"


def test_root_inputs_that_can_be_wrong_are_validated():
    variables = {}
    for entry in parse("variables.tf")["variable"]:
        variables.update(entry)
    free_form = {
        "tags",
        "alb_internal",
        "alb_deletion_protection",
        "enable_waf",
        "enable_amp",
        "amp_alert_manager",
        "budget_by_application_tag",
        "nat_gateway_per_az",
        "container_image",
        "force_destroy_buckets",
    }
    unvalidated = [n for n, b in variables.items() if "validation" not in b and n not in free_form]
    assert not unvalidated, f"root variables without validation: {unvalidated}"


def test_every_module_has_variables_main_and_outputs():
    for module in sorted((tf.MODULE / "modules").iterdir()):
        assert {"variables.tf", "main.tf", "outputs.tf"} <= {p.name for p in module.iterdir()}, (
            module
        )


def test_the_cost_table_puts_lean_at_10k_urls_under_100_dollars_line_by_line():
    readme = (tf.MODULE / "README.md").read_text()
    section = readme[readme.index("## Cost: two profiles") : readme.index("## Security posture")]
    assert "us-east-1" in section and "2026" in section, "which region, which prices"
    for profile in ("lean", "full"):
        for urls in ("1,000", "10,000", "100,000"):
            title = rf"##### {profile}, {urls} URLs: ≈ \$([\d,.]+)\n"
            total_row = r"\| \*\*total\*\* \| \| \*\*([\d,.]+)\*\* \|"
            heading = re.search(title + r"(.*?)" + total_row, section, re.S)
            assert heading, (profile, urls)
            lines = re.findall(r"^\| [^|]+ \| [^|]+ \| ([\d,.]+) \|$", heading[2], re.M)
            # Each line's figure adds up to the total the table states.
            total = sum(float(v.replace(",", "")) for v in lines)
            assert abs(total - float(heading[3].replace(",", ""))) < 0.02, (profile, urls)
            if (profile, urls) == ("lean", "10,000"):
                assert total < 100
    # The defaults are the lean profile's.
    variables = _root_variables()
    assert variables["profile"]["default"] == "lean"
    assert variables["cloudwatch_url_metrics"]["default"] is None
    root = merged_locals(parse("main.tf"))
    assert root["url_metrics"].endswith('(local.lean ? "none" : "ResponseTime")}')
    assert root["budget_usd"].endswith("(local.lean ? 100 : 1000)}")


def test_named_secrets_reach_the_container_and_only_the_execution_role_reads_them():
    """${NAME} in the targets CSV from Secrets Manager or SSM (issue #14): each entry of
    container_secrets becomes an ECS `secrets` entry of the daemon's container, and the
    execution role (which ECS uses to inject them) may read exactly the named ones."""
    service = (tf.MODULE / "modules" / "service" / "main.tf").read_text()
    assert re.search(
        r"secrets\s*=\s*\[for k in sort\(keys\(var\.container_secrets\)\) : "
        r"\{ name = k, valueFrom = var\.container_secrets\[k\] \}\]",
        service,
    )
    iam = (tf.MODULE / "modules" / "iam" / "main.tf").read_text()
    for sid, action, arns in (
        ("ReadTheNamedSecrets", "secretsmanager:GetSecretValue", "local.secret_arns"),
        ("ReadTheNamedParameters", "ssm:GetParameters", "local.parameter_arns"),
    ):
        block = iam[iam.index(f'sid       = "{sid}"') :][:200]
        assert f'actions   = ["{action}"]' in block and f"resources = {arns}" in block
    task_policy = iam.split('data "aws_iam_policy_document" "task"')[1]
    task_policy = task_policy.split('resource "aws_iam_role_policy" "task"')[0]
    assert "secretsmanager" not in task_policy and "ssm:" not in task_policy
    root = (tf.MODULE / "variables.tf").read_text()
    assert 'variable "container_secrets"' in root

"""The whole stack applied to moto (server mode, 127.0.0.1) and destroyed again.

The module is applied once per run (module-scoped fixture; the destroy in its teardown must
leave an empty state), and each test then reads what was really created back from the emulator
with boto3. Moto cannot apply everything; what it lacks is listed in ops/terraform/README.md
and covered by `terraform validate`, checkov and the HCL tests instead.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import yaml

from tests.support import MotoServer
from tests.terraform import tf
from tests.terraform.test_hcl_contract import REQUIRED_ENV

pytestmark = pytest.mark.slow

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/upcheck-ci"
TFVARS = {
    "profile": "full",
    "aws_region": REGION,
    "image_tag": "test-1",
    "alb_deletion_protection": False,  # so that destroy can remove it
    "force_destroy_buckets": True,  # moto really writes S3 access logs into the logs bucket
    "enable_amp": True,
    "enable_waf": True,
    "alarm_email": "oncall@example.com",
    "bucket_admin_principal_arns": [ADMIN],
    "alb_ingress_cidrs": ["203.0.113.0/24"],
    # Several tasks sharing the list (shard = "ecs" by default). Moto records the service's
    # desired count but starts no Fargate task, so nothing runs.
    "desired_count": 3,
    # Moto has no AMP alert manager API, and its Budgets API never lets the provider finish
    # creating a budget with notifications: both are planned (the public plan) instead.
    "amp_alert_manager": False,
    "monthly_budget_usd": 0,
    # The GitHub OIDC provider and the four CI roles.
    "github_repository": "acme/upcheck",
    "tf_state_bucket": "acme-upcheck-tf-state",
}
APPLY_TIMEOUT = 480

# The lean profile, as an operator would write it: no load balancer inputs at all.
LEAN_TFVARS = {
    "aws_region": REGION,
    "image_tag": "test-1",
    "force_destroy_buckets": True,
    "bucket_admin_principal_arns": [ADMIN],
}

# The public exposure: internet-facing only with HTTPS and an OIDC login in front (planned, not
# applied: moto cannot validate the certificate). The secret is a test value.
OIDC = {
    "type": "oidc",
    "oidc": {
        "issuer": "https://login.example.com",
        "authorization_endpoint": "https://login.example.com/authorize",
        "token_endpoint": "https://login.example.com/token",
        "user_info_endpoint": "https://login.example.com/userinfo",
        "client_id": "upcheck-status-page",
    },
}


class Stack:
    """An applied copy of the module and a way to talk to what it created."""

    def __init__(self, terraform, workdir: Path, env: dict[str, str], moto: MotoServer) -> None:
        self.terraform = terraform
        self.workdir = workdir
        self.env = env
        self.moto = moto
        self.outputs: dict = {}
        self.https_plan: dict = {}
        self.state: dict = {}
        self.lean: dict = {}
        self._session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )

    def client(self, service: str):
        return self._session.client(service, endpoint_url=self.moto.endpoint_url)

    def tf(self, *args: str, timeout: float = 300):
        return self.terraform.run(list(args), self.workdir, self.env, timeout=timeout)


def _https_plan(terraform, workdir: Path, env: dict[str, str]) -> dict:
    """Plan (not apply) the stack with a domain, returning `terraform show -json` of it."""
    terraform.run(["plan", "-input=false", "-refresh=false", "-out=https.plan"], workdir, env)
    return json.loads(terraform.run(["show", "-json", "https.plan"], workdir, env).stdout)


def _apply_read_and_destroy_lean(terraform, workdir: Path, services: set[str]) -> dict:
    """The lean profile applied to a moto server of its own, read back, destroyed: what the
    lean tests assert on. Runs beside the full stack's apply (both mostly wait on moto)."""
    with MotoServer() as moto:
        override = tf.moto_override(moto.endpoint_url, services, REGION)
        tf.assert_only_loopback_endpoints(override, services)
        (workdir / "override.tf").write_text(override)
        (workdir / "test.auto.tfvars.json").write_text(json.dumps(LEAN_TFVARS))
        lean = Stack(terraform, workdir, terraform.env("lean"), moto)
        lean.tf("init", "-input=false", timeout=180)
        # The lean defaults, budget included, as planned; then applied without the budget,
        # which moto cannot create (see TFVARS).
        lean.tf("plan", "-input=false", "-refresh=false", "-out=lean.plan")
        found_plan = json.loads(lean.tf("show", "-json", "lean.plan").stdout)
        lean.tf(
            "apply",
            "-auto-approve",
            "-input=false",
            "-parallelism=30",
            "-var",
            "monthly_budget_usd=0",
            timeout=APPLY_TIMEOUT,
        )
        outputs = json.loads(lean.tf("output", "-json").stdout)
        found: dict = {"outputs": {name: item["value"] for name, item in outputs.items()}}
        found["plan"] = found_plan
        found["state"] = json.loads(lean.tf("show", "-json").stdout)
        ec2, ecs = lean.client("ec2"), lean.client("ecs")
        found["nat_gateways"] = ec2.describe_nat_gateways()["NatGateways"]
        found["load_balancers"] = lean.client("elbv2").describe_load_balancers()["LoadBalancers"]
        found["endpoints"] = ec2.describe_vpc_endpoints()["VpcEndpoints"]
        found["flow_logs"] = ec2.describe_flow_logs()["FlowLogs"]
        found["log_groups"] = lean.client("logs").describe_log_groups()["logGroups"]
        (service,) = ecs.describe_services(
            cluster=found["outputs"]["cluster_name"], services=[found["outputs"]["service_name"]]
        )["services"]
        found["service"] = service
        vpc_config = service["networkConfiguration"]["awsvpcConfiguration"]
        found["subnets"] = ec2.describe_subnets(SubnetIds=vpc_config["subnets"])["Subnets"]
        found["task_security_groups"] = ec2.describe_security_groups(
            GroupIds=vpc_config["securityGroups"]
        )["SecurityGroups"]
        found["task_definition"] = ecs.describe_task_definition(
            taskDefinition=found["outputs"]["task_definition_arn"]
        )["taskDefinition"]
        found["workspaces"] = lean.client("amp").list_workspaces()["workspaces"]
        lean.tf(
            "destroy",
            "-auto-approve",
            "-input=false",
            "-refresh=false",
            "-parallelism=30",
            "-var",
            "monthly_budget_usd=0",
            timeout=APPLY_TIMEOUT,
        )
        found["left"] = lean.tf("state", "list").stdout.split()
        return found


@pytest.fixture(scope="module")
def stack(terraform, tmp_path_factory, checkov_install):
    # checkov_install: only so that its background install overlaps this slow apply.
    base = tmp_path_factory.mktemp("moto")
    workdir = tf.copy_module(base / "stack")
    https_dir = tf.copy_module(base / "https")
    lean_dir = tf.copy_module(base / "lean")
    services = tf.services_used(workdir)
    # The CI roles attach AWS managed policies (ReadOnlyAccess, AdministratorAccess), which moto
    # knows only when told to load them; its server process inherits this environment.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    with MotoServer() as moto, ThreadPoolExecutor(max_workers=2) as background:
        lean = background.submit(_apply_read_and_destroy_lean, terraform, lean_dir, services)
        override = tf.moto_override(moto.endpoint_url, services, REGION)
        tf.assert_only_loopback_endpoints(override, services)
        deployed = Stack(terraform, workdir, terraform.env("moto"), moto)
        zone = (
            deployed.client("route53")
            .create_hosted_zone(Name="example.com", CallerReference="upcheck-test")["HostedZone"][
                "Id"
            ]
            .split("/")[-1]
        )
        https_vars = {
            **TFVARS,
            "amp_alert_manager": True,
            "monthly_budget_usd": None,
            "alb_internal": False,
            "alb_ingress_cidrs": ["0.0.0.0/0"],
            "domain_name": "status.example.com",
            "route53_zone_id": zone,
            "alb_authentication": OIDC,
            "alb_oidc_client_secret": "test-only-secret",
        }
        for directory, tfvars in ((workdir, TFVARS), (https_dir, https_vars)):
            (directory / "override.tf").write_text(override)
            (directory / "test.auto.tfvars.json").write_text(json.dumps(tfvars))

        https_env = terraform.env("https")
        terraform.run(["init", "-input=false"], https_dir, https_env, timeout=180)
        deployed.tf("init", "-input=false", timeout=180)
        # The HTTPS plan is CPU-bound and the apply mostly waits on the provider's pollers, so
        # the plan runs beside the apply instead of after it.
        https_plan = background.submit(_https_plan, terraform, https_dir, https_env)
        deployed.tf(
            "apply", "-auto-approve", "-input=false", "-parallelism=30", timeout=APPLY_TIMEOUT
        )
        outputs = json.loads(deployed.tf("output", "-json").stdout)
        deployed.outputs = {name: item["value"] for name, item in outputs.items()}
        deployed.state = json.loads(deployed.tf("show", "-json").stdout)
        deployed.https_plan = https_plan.result(timeout=APPLY_TIMEOUT)
        deployed.lean = lean.result(timeout=2 * APPLY_TIMEOUT)

        yield deployed

        # Nothing changed since the apply, so the state need not be refreshed first.
        deployed.tf(
            "destroy",
            "-auto-approve",
            "-input=false",
            "-refresh=false",
            "-parallelism=30",
            timeout=APPLY_TIMEOUT,
        )
        os.environ.pop("MOTO_IAM_LOAD_MANAGED_POLICIES", None)
        left = deployed.tf("state", "list").stdout.split()
        assert left == [], f"destroy left resources in the state: {left}"
        ecs = deployed.client("ecs")
        clusters = ecs.describe_clusters(clusters=[deployed.outputs["cluster_name"]])["clusters"]
        assert all(c["status"] == "INACTIVE" for c in clusters), clusters
        vpcs = deployed.client("ec2").describe_vpcs(
            Filters=[{"Name": "tag:Name", "Values": ["upcheck"]}]
        )["Vpcs"]
        assert vpcs == []


def _bucket(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[0]


# ---------------------------------------------------------------------------------------------
def test_every_endpoint_of_the_stack_is_routed_to_moto():
    services = tf.services_used(tf.MODULE)
    assert {"ec2", "ecs", "elbv2", "s3", "iam", "sts", "kms", "logs", "cloudwatch"} <= services
    override = tf.moto_override("http://127.0.0.1:1", services, REGION)
    tf.assert_only_loopback_endpoints(override, services)
    with pytest.raises(AssertionError, match="not routed"):
        tf.assert_only_loopback_endpoints(override, services | {"lambda"})
    leaky = override.replace('s3 = "http://127.0.0.1:1"', 's3 = "https://s3.amazonaws.com"')
    with pytest.raises(AssertionError, match="not on loopback"):
        tf.assert_only_loopback_endpoints(leaky, services)


def test_task_definition_carries_the_spec_configuration(stack):
    ecs = stack.client("ecs")
    task = ecs.describe_task_definition(taskDefinition=stack.outputs["task_definition_arn"])
    definition = task["taskDefinition"]
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    containers = {c["name"]: c for c in definition["containerDefinitions"]}
    daemon = containers["upcheck"]

    env = {e["name"]: e["value"] for e in daemon["environment"]}
    assert set(env) == REQUIRED_ENV
    assert env["UPCHECK_TARGETS"] == stack.outputs["targets_s3_uri"]
    assert env["UPCHECK_RESULTS"] == stack.outputs["results_s3_uri"]
    assert env["UPCHECK_RESULTS"].endswith("/results/results.json")
    assert env["UPCHECK_LISTEN"] == "0.0.0.0:8080"
    assert env["UPCHECK_CLOUDWATCH_NAMESPACE"] == "Upcheck"
    assert env["UPCHECK_SHARD"] == "ecs"

    assert daemon["entryPoint"] == ["python", "-m", "daemon"]
    assert daemon["portMappings"][0]["containerPort"] == 8080
    command = daemon["healthCheck"]["command"]
    assert command[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8080/health" in command[3]
    assert daemon["readonlyRootFilesystem"] is True
    assert daemon["user"] == "10001:10001"
    assert daemon["stopTimeout"] > 10
    assert daemon["logConfiguration"]["logDriver"] == "awslogs"

    group = daemon["logConfiguration"]["options"]["awslogs-group"]
    assert group == stack.outputs["log_group_name"]
    (log_group,) = stack.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert log_group["retentionInDays"] == 365
    assert log_group.get("kmsKeyId")


def test_adot_sidecar_scrapes_the_daemon_and_writes_to_the_workspace(stack):
    ecs = stack.client("ecs")
    task = ecs.describe_task_definition(taskDefinition=stack.outputs["task_definition_arn"])
    containers = {c["name"]: c for c in task["taskDefinition"]["containerDefinitions"]}
    adot = containers["adot-collector"]
    assert adot["essential"] is False
    config = {e["name"]: e["value"] for e in adot["environment"]}["AOT_CONFIG_CONTENT"]
    assert "localhost:8080" in config and "/metrics" in config
    assert stack.outputs["amp_remote_write_url"] in config
    assert "sigv4auth" in config

    # Two tasks (a deployment runs up to 200 %) both scrape localhost:8080: only a per-task
    # label keeps their series apart in AMP.
    parsed = yaml.safe_load(config)
    detector = parsed["processors"]["resourcedetection/ecs"]
    assert detector["detectors"] == ["ecs"]
    dropped = {a["key"] for a in parsed["processors"]["resource/task_only"]["attributes"]}
    assert "aws.ecs.task.arn" not in dropped
    assert all(
        a["action"] == "delete" for a in parsed["processors"]["resource/task_only"]["attributes"]
    )
    pipeline = parsed["service"]["pipelines"]["metrics"]["processors"]
    assert pipeline.index("resourcedetection/ecs") < pipeline.index("resource/task_only")
    exporter = parsed["exporters"]["prometheusremotewrite"]
    assert exporter["resource_to_telemetry_conversion"] == {"enabled": True}

    workspaces = stack.client("amp").list_workspaces()["workspaces"]
    assert [w["workspaceId"] for w in workspaces] == [stack.outputs["amp_workspace_id"]]


def test_service_runs_in_private_subnets_behind_the_alb(stack):
    ecs = stack.client("ecs")
    (service,) = ecs.describe_services(
        cluster=stack.outputs["cluster_name"], services=[stack.outputs["service_name"]]
    )["services"]
    vpc_config = service["networkConfiguration"]["awsvpcConfiguration"]
    assert vpc_config["assignPublicIp"] == "DISABLED"

    ec2 = stack.client("ec2")
    subnets = ec2.describe_subnets(SubnetIds=vpc_config["subnets"])["Subnets"]
    tiers = {t["Value"] for s in subnets for t in s.get("Tags", []) if t["Key"] == "Tier"}
    assert tiers == {"private"}
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    assert not any(s["MapPublicIpOnLaunch"] for s in subnets)

    # Three tasks share the list. (Moto does not report the deployment configuration: the HCL
    # tests pin it.)
    assert service["desiredCount"] == 3

    (load_balancer,) = service["loadBalancers"]
    assert load_balancer["containerPort"] == 8080
    elbv2 = stack.client("elbv2")
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[load_balancer["targetGroupArn"]])[
        "TargetGroups"
    ]
    assert group["HealthCheckPath"] == "/health"
    assert group["Port"] == 8080 and group["TargetType"] == "ip"

    (task_sg,) = ec2.describe_security_groups(GroupIds=vpc_config["securityGroups"])[
        "SecurityGroups"
    ]
    sources = [
        (p.get("FromPort"), pair["GroupId"])
        for p in task_sg["IpPermissions"]
        for pair in p.get("UserIdGroupPairs", [])
    ]
    assert [p for p in task_sg["IpPermissions"] if p.get("IpRanges")] == []
    (alb,) = elbv2.describe_load_balancers(Names=["upcheck"])["LoadBalancers"]
    assert sources == [(8080, alb["SecurityGroups"][0])]
    # Private by default: an internal ALB, in the private subnets, with no public address.
    assert alb["Scheme"] == "internal"
    alb_subnets = ec2.describe_subnets(SubnetIds=[z["SubnetId"] for z in alb["AvailabilityZones"]])
    assert {
        t["Value"] for s in alb_subnets["Subnets"] for t in s["Tags"] if t["Key"] == "Tier"
    } == {"private"}
    # The load balancer admits exactly the CIDRs it was given (no default opens it wider).
    (alb_sg,) = ec2.describe_security_groups(GroupIds=alb["SecurityGroups"])["SecurityGroups"]
    ranges = {r["CidrIp"] for p in alb_sg["IpPermissions"] for r in p.get("IpRanges", [])}
    assert ranges == {"203.0.113.0/24"}


def test_every_private_subnet_routes_out_through_a_nat_gateway(stack):
    ec2 = stack.client("ec2")
    private = ec2.describe_subnets(Filters=[{"Name": "tag:Tier", "Values": ["private"]}])["Subnets"]
    assert len(private) == 2
    for subnet in private:
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}]
        )["RouteTables"]
        assert len(tables) == 1, f"{subnet['SubnetId']} is not associated with a route table"
        default = [r for r in tables[0]["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        assert len(default) == 1 and default[0].get("NatGatewayId"), default


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _task_role_statements(stack) -> list[dict]:
    iam = stack.client("iam")
    document = iam.get_role_policy(RoleName="upcheck-task", PolicyName="upcheck-daemon")[
        "PolicyDocument"
    ]
    document = json.loads(document) if isinstance(document, str) else document
    assert iam.list_attached_role_policies(RoleName="upcheck-task")["AttachedPolicies"] == []
    return document["Statement"]


def test_task_role_is_least_privilege(stack):
    targets = _bucket(stack.outputs["targets_s3_uri"])
    results = _bucket(stack.outputs["results_s3_uri"])
    key_arn = stack.client("kms").describe_key(KeyId="alias/upcheck")["KeyMetadata"]["Arn"]
    (workspace,) = stack.client("amp").list_workspaces()["workspaces"]
    expected = {
        f"arn:aws:s3:::{targets}/targets/urls.csv",
        f"arn:aws:s3:::{results}/results/results.json",
        f"arn:aws:s3:::{results}/results/results.html",
        f"arn:aws:s3:::{results}/results/results.json.parts/*",
        f"arn:aws:s3:::{results}",
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/upcheck/*",
        key_arn,
        workspace["arn"],
        "*",
    }
    # The two actions that name no resource, each pinned by a condition instead.
    scoped_by_condition = {"cloudwatch:PutMetricData", "ecs:ListTasks"}
    seen = set()
    for statement in _task_role_statements(stack):
        assert statement["Effect"] == "Allow"
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        assert not [a for a in actions if "*" in a], statement
        seen.update(resources)
        if "*" in resources:
            assert len(actions) == 1 and actions[0] in scoped_by_condition, statement
            assert statement["Condition"], statement
    assert seen == expected
    by_action = {a: s for s in _task_role_statements(stack) for a in _as_list(s["Action"])}
    assert by_action["cloudwatch:PutMetricData"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "Upcheck"}
    }


def test_task_role_may_list_and_describe_the_tasks_of_its_cluster_only(stack):
    (cluster,) = stack.client("ecs").describe_clusters(clusters=[stack.outputs["cluster_name"]])[
        "clusters"
    ]
    by_action = {a: s for s in _task_role_statements(stack) for a in _as_list(s["Action"])}
    for action in ("ecs:ListTasks", "ecs:DescribeTasks"):
        condition = by_action[action]["Condition"]
        assert list(condition) == ["ArnEquals"], action
        assert _as_list(condition["ArnEquals"]["ecs:cluster"]) == [cluster["clusterArn"]], action
    assert _as_list(by_action["ecs:ListTasks"]["Resource"]) == ["*"]
    assert _as_list(by_action["ecs:DescribeTasks"]["Resource"]) == [
        cluster["clusterArn"].replace(":cluster/", ":task/") + "/*"
    ]


def test_task_role_reads_writes_and_lists_the_results_parts(stack):
    results = _bucket(stack.outputs["results_s3_uri"])
    key = stack.outputs["results_s3_uri"].split("/", 3)[3]
    assert key == "results/results.json"
    statements = {s["Sid"]: s for s in _task_role_statements(stack)}
    parts = statements["WriteAndReadShardParts"]
    assert sorted(_as_list(parts["Action"])) == ["s3:GetObject", "s3:PutObject"]
    assert _as_list(parts["Resource"]) == [f"arn:aws:s3:::{results}/{key}.parts/*"]
    listing = statements["ListShardParts"]
    assert _as_list(listing["Action"]) == ["s3:ListBucket"]
    assert _as_list(listing["Resource"]) == [f"arn:aws:s3:::{results}"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": f"{key}.parts/*"}}

    # The parts of replaced tasks are removed a day after their last write.
    rules = stack.client("s3").get_bucket_lifecycle_configuration(Bucket=results)["Rules"]
    (expiring,) = [r for r in rules if r.get("Expiration", {}).get("Days")]
    assert expiring["Status"] == "Enabled"
    assert expiring["Filter"] == {"Prefix": f"{key}.parts/"}
    assert expiring["Expiration"]["Days"] == 1


def test_buckets_are_private_encrypted_versioned_and_tls_only(stack):
    s3 = stack.client("s3")
    data = [_bucket(stack.outputs["targets_s3_uri"]), _bucket(stack.outputs["results_s3_uri"])]
    for bucket in [*data, stack.outputs["logs_bucket"]]:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4, bucket
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled", bucket
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        tls = [s for s in policy["Statement"] if s.get("Sid") == "DenyPlainHttp"]
        assert tls and tls[0]["Effect"] == "Deny", bucket
        assert tls[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for bucket in data:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        (deny,) = [s for s in policy["Statement"] if s["Sid"].startswith("DenyObjectAccess")]
        allowed = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        assert sorted(allowed) == sorted([f"arn:aws:iam::{ACCOUNT}:role/upcheck-task", ADMIN])
        assert (
            s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetBucket"]
            == (stack.outputs["logs_bucket"])
        )


def test_image_repository_is_immutable_and_scanned(stack):
    ecr = stack.client("ecr")
    (repository,) = ecr.describe_repositories(repositoryNames=["upcheck"])["repositories"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"]["scanOnPush"] is True
    assert repository["encryptionConfiguration"]["encryptionType"] == "KMS"
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName="upcheck")["lifecyclePolicyText"])
    assert {r["selection"]["tagStatus"] for r in policy["rules"]} == {"untagged", "any"}


def _metric_names(alarm: dict) -> set[str]:
    if alarm.get("MetricName"):
        return {alarm["MetricName"]}
    return {q["MetricStat"]["Metric"]["MetricName"] for q in alarm["Metrics"] if "MetricStat" in q}


def test_alarms_watch_the_spec_figures_and_notify_the_topic(stack):
    cloudwatch = stack.client("cloudwatch")
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNames=stack.outputs["alarm_names"])["MetricAlarms"]
    }
    assert len(alarms) == 4
    by_name = {name.removeprefix("upcheck-"): alarm for name, alarm in alarms.items()}
    assert set(by_name) == {
        "targets-down",
        "targets-file-invalid",
        "daemon-silent",
        "running-tasks",
    }
    assert _metric_names(by_name["targets-down"]) == {"TargetsDown"}
    assert _metric_names(by_name["targets-file-invalid"]) == {"TargetsLoadSuccess"}
    assert _metric_names(by_name["daemon-silent"]) == {"TargetsTotal", "DesiredTaskCount"}
    assert _metric_names(by_name["running-tasks"]) == {"RunningTaskCount"}

    invalid = by_name["targets-file-invalid"]
    assert invalid["Namespace"] == "Upcheck"
    assert invalid["Dimensions"] == [{"Name": "Application", "Value": "upcheck"}]
    assert invalid["ComparisonOperator"] == "LessThanThreshold"
    assert invalid["Threshold"] == 1
    # reload 60 s, period 60 s: one failed load touches at most 2 periods; 3 means two failed.
    assert invalid["EvaluationPeriods"] == 3
    assert invalid["DatapointsToAlarm"] == 3

    # A URL that stays dead must not hide the next one: the alarm is on the increase of the
    # number of URLs down for a whole window (5 periods of 60 s), not on "at least one down".
    down = by_name["targets-down"]
    queries = {q["Id"]: q for q in down["Metrics"]}
    stat = queries["down"]["MetricStat"]
    assert stat["Stat"] == "Minimum" and stat["Period"] == 300
    assert stat["Metric"]["Namespace"] == "Upcheck"
    assert stat["Metric"]["Dimensions"] == [{"Name": "Application", "Value": "upcheck"}]
    assert queries["newly_down"]["Expression"] == "DIFF(down)"
    assert queries["newly_down"]["ReturnData"] is True
    assert down["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert down["Threshold"] == 1
    assert down.get("OKActions", []) == []

    # Silence pages only while ECS wants tasks running (a paused service sends nothing).
    silent = by_name["daemon-silent"]
    queries = {q["Id"]: q for q in silent["Metrics"]}
    assert queries["sent"]["MetricStat"]["Stat"] == "SampleCount"
    desired = queries["desired"]["MetricStat"]["Metric"]
    assert desired["Namespace"] == "ECS/ContainerInsights"
    assert queries["silent_while_wanted"]["Expression"] == (
        "IF(FILL(desired, 3) > 0 AND FILL(sent, 0) < 1, 1, 0)"
    )
    assert silent["TreatMissingData"] == "breaching"

    running = by_name["running-tasks"]
    assert running["Namespace"] == "ECS/ContainerInsights"
    # The threshold is the desired count (3 here), not "at least one".
    assert running["Threshold"] == 3
    assert running["ComparisonOperator"] == "LessThanThreshold"
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [stack.outputs["alarm_topic_arn"]]

    sns = stack.client("sns")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=stack.outputs["alarm_topic_arn"])
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions["Subscriptions"]] == [
        ("email", "oncall@example.com")
    ]
    dashboard = cloudwatch.get_dashboard(DashboardName=stack.outputs["dashboard_name"])
    assert "TargetsLoadSuccess" in dashboard["DashboardBody"]
    # Running against desired tasks, side by side, now that there can be many.
    assert "RunningTaskCount" in dashboard["DashboardBody"]
    assert "DesiredTaskCount" in dashboard["DashboardBody"]


def test_the_metrics_path_is_never_forwarded_by_the_load_balancer(stack):
    elbv2 = stack.client("elbv2")
    (alb,) = elbv2.describe_load_balancers(Names=["upcheck"])["LoadBalancers"]
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    assert listener["Port"] == 80 and listener["Protocol"] == "HTTP"
    rules = [r for r in elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]]
    (metrics,) = [r for r in rules if not r["IsDefault"]]
    assert metrics["Priority"] == "1"
    (condition,) = metrics["Conditions"]
    assert condition["Field"] == "path-pattern"
    paths = condition.get("PathPatternConfig", {}).get("Values") or condition["Values"]
    assert sorted(paths) == ["/metrics", "/metrics/*"]
    (action,) = metrics["Actions"]
    assert action["Type"] == "fixed-response"
    assert action["FixedResponseConfig"]["StatusCode"] == "404"


def _resources(values: dict) -> list[dict]:
    """Every resource of a `terraform show -json` (state or planned values), modules included."""
    found, modules = [], [values["root_module"]]
    while modules:
        module = modules.pop()
        found += module.get("resources", [])
        modules += module.get("child_modules", [])
    return found


def assert_public_only_behind_https_and_a_login(values: dict) -> None:
    """The exposure rules, on any applied state or plan: an internet-facing ALB has HTTPS, an
    authenticate action before anything is forwarded, WAF, and no plain listener that forwards;
    every listener that forwards answers /metrics with a 404 first."""
    resources = _resources(values)
    by_type: dict[str, list[dict]] = {}
    for resource in resources:
        by_type.setdefault(resource["type"], []).append(resource.get("values", {}))
    (lb,) = by_type["aws_lb"]
    listeners = {
        r["address"].rsplit(".", 1)[-1]: r.get("values", {})
        for r in resources
        if r["type"] == "aws_lb_listener"
    }
    forwarding = {
        name: listener
        for name, listener in listeners.items()
        if any(a["type"] == "forward" for a in listener["default_action"])
    }
    assert forwarding, listeners
    (rule,) = by_type["aws_lb_listener_rule"]
    assert rule["action"][0]["type"] == "fixed-response"
    assert rule["action"][0]["fixed_response"][0]["status_code"] == "404"
    assert rule["condition"][0]["path_pattern"][0]["values"] == ["/metrics", "/metrics/*"]
    if lb["internal"]:
        return
    assert set(forwarding) == {"https[0]"}, "a public ALB forwards on HTTPS only"
    actions = sorted(forwarding["https[0]"]["default_action"], key=lambda a: a["order"])
    assert actions[0]["type"] in {"authenticate-oidc", "authenticate-cognito"}, actions
    assert actions[-1]["type"] == "forward"
    assert listeners["http_redirect[0]"]["default_action"][0]["type"] == "redirect"
    assert by_type.get("aws_wafv2_web_acl_association"), "a public ALB always has WAF"


def test_the_applied_stack_keeps_the_exposure_rules(stack):
    assert_public_only_behind_https_and_a_login(stack.state["values"])
    (lb,) = [r for r in _resources(stack.state["values"]) if r["type"] == "aws_lb"]
    assert lb["values"]["internal"] is True


def test_a_public_load_balancer_is_planned_with_https_a_login_and_waf(stack):
    """HTTPS is planned, not applied: see the README note on moto and ACM validation."""
    plan = stack.https_plan
    assert_public_only_behind_https_and_a_login(plan["planned_values"])
    changes = {c["address"]: c["change"]["actions"] for c in plan["resource_changes"]}
    lb = "module.load_balancer[0]"
    assert changes[f"{lb}.aws_lb_listener.https[0]"] == ["create"]
    assert changes[f"{lb}.aws_lb_listener.http_redirect[0]"] == ["create"]
    assert f"{lb}.aws_lb_listener.http[0]" not in changes, "no plain-HTTP listener with a domain"
    assert changes[f"{lb}.aws_acm_certificate.this[0]"] == ["create"]
    assert changes[f"{lb}.aws_acm_certificate_validation.this[0]"] == ["create"]
    assert changes[f"{lb}.aws_route53_record.alias[0]"] == ["create"]
    assert any(a.startswith(f"{lb}.aws_route53_record.validation[") for a in changes)
    planned = {c["address"]: c["change"]["after"] for c in plan["resource_changes"]}
    assert planned[f"{lb}.aws_lb.this"]["internal"] is False
    https = planned[f"{lb}.aws_lb_listener.https[0]"]
    assert https["port"] == 443 and https["protocol"] == "HTTPS"
    assert https["ssl_policy"].startswith("ELBSecurityPolicy-TLS13")
    oidc = next(a for a in https["default_action"] if a["type"] == "authenticate-oidc")
    assert oidc["authenticate_oidc"][0]["issuer"] == OIDC["oidc"]["issuer"]
    assert oidc["authenticate_oidc"][0]["on_unauthenticated_request"] == "authenticate"
    redirect = planned[f"{lb}.aws_lb_listener.http_redirect[0]"]["default_action"][0]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"][0]["protocol"] == "HTTPS"
    assert redirect["redirect"][0]["port"] == "443"
    ingress_ports = {
        after["from_port"]
        for address, after in planned.items()
        if address.startswith(f"{lb}.aws_vpc_security_group_ingress_rule.alb[")
    }
    assert ingress_ports == {80, 443}
    # The client secret is sensitive: Terraform's output masks it.
    (change,) = [
        c for c in plan["resource_changes"] if c["address"] == f"{lb}.aws_lb_listener.https[0]"
    ]
    sensitive = [
        a.get("authenticate_oidc") for a in change["change"]["after_sensitive"]["default_action"]
    ]
    assert any(s and s[0].get("client_secret") is True for s in sensitive), sensitive


def test_the_alert_rules_run_in_the_workspace(stack):
    amp = stack.client("amp")
    workspace = stack.outputs["amp_workspace_id"]
    (namespace,) = amp.list_rule_groups_namespaces(workspaceId=workspace)["ruleGroupsNamespaces"]
    described = amp.describe_rule_groups_namespace(workspaceId=workspace, name=namespace["name"])
    data = described["ruleGroupsNamespace"]["data"]
    data = data.decode() if isinstance(data, bytes) else data
    alerts_file = tf.MODULE.parent / "prometheus" / "alerts.yml"
    assert yaml.safe_load(data) == yaml.safe_load(alerts_file.read_text())


def test_the_alert_manager_routes_to_the_topic_and_inhibits_per_url_alerts(stack):
    # Moto has no alert manager API: the configuration is read from the output of the applied
    # stack, and the definition resource from the public plan, where it is created.
    config = yaml.safe_load(stack.outputs["amp_alertmanager_config"])
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    (sns,) = receiver["sns_configs"]
    assert sns["topic_arn"] == stack.outputs["alarm_topic_arn"]
    assert sns["sigv4"] == {"region": REGION}
    example = yaml.safe_load((tf.MODULE.parent / "prometheus" / "alertmanager.yml").read_text())
    assert config["inhibit_rules"] == example["inhibit_rules"]
    changes = {c["address"]: c["change"]["actions"] for c in stack.https_plan["resource_changes"]}
    definition = "module.prometheus[0].aws_prometheus_alert_manager_definition.this[0]"
    assert changes[definition] == ["create"]
    # The topic lets the alert manager of this account publish.
    policy = json.loads(
        stack.client("sns").get_topic_attributes(TopicArn=stack.outputs["alarm_topic_arn"])[
            "Attributes"
        ]["Policy"]
    )
    principals = [s["Principal"].get("Service") for s in policy["Statement"]]
    assert "aps.amazonaws.com" in principals


# ---------------------------------------------------------------------------------------------
# The lean profile (the default): no NAT, no load balancer, public IPs, rejected flows only
# ---------------------------------------------------------------------------------------------
def test_lean_applies_with_no_nat_gateway_and_no_load_balancer_and_destroys(stack):
    lean = stack.lean
    assert lean["left"] == [], "destroy left resources in the state"
    types = {r["type"] for r in _resources(lean["state"]["values"])}
    assert "aws_nat_gateway" not in types and "aws_eip" not in types
    assert not {t for t in types if t.startswith("aws_lb")}
    assert lean["nat_gateways"] == [] and lean["load_balancers"] == []
    assert lean["outputs"]["nat_gateway_ids"] == []
    assert "url" not in lean["outputs"], "no load balancer, no URL (null outputs are left out)"


def test_lean_tasks_use_public_ips_in_the_public_subnets_and_admit_nothing(stack):
    lean = stack.lean
    vpc_config = lean["service"]["networkConfiguration"]["awsvpcConfiguration"]
    assert vpc_config["assignPublicIp"] == "ENABLED"
    tiers = {t["Value"] for s in lean["subnets"] for t in s["Tags"] if t["Key"] == "Tier"}
    assert tiers == {"public"}
    (group,) = lean["task_security_groups"]
    assert group["IpPermissions"] == [], "nothing may connect to a task with a public IP"
    assert lean["service"].get("loadBalancers", []) == []


def test_lean_reaches_s3_through_a_gateway_endpoint_and_logs_rejected_flows_for_30_days(stack):
    lean = stack.lean
    (endpoint,) = lean["endpoints"]
    assert endpoint["ServiceName"] == f"com.amazonaws.{REGION}.s3"
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert len(endpoint["RouteTableIds"]) == 3, "the public table and both private ones"
    (flow,) = lean["flow_logs"]
    assert flow["TrafficType"] == "REJECT"
    name = flow.get("LogGroupName") or flow["LogDestination"].split(":log-group:")[1].rstrip(":*")
    (group,) = [g for g in lean["log_groups"] if g["logGroupName"] == name]
    assert group["retentionInDays"] == 30


def test_lean_publishes_no_per_url_metrics_runs_no_amp_and_has_a_100_dollar_budget(stack):
    lean = stack.lean
    (daemon,) = lean["task_definition"]["containerDefinitions"]
    env = {e["name"]: e["value"] for e in daemon["environment"]}
    assert env["UPCHECK_CLOUDWATCH_URL_METRICS"] == "none"
    assert lean["workspaces"] == []
    assert_budget(lean["plan"], 100)


def assert_budget(plan: dict, usd: int) -> None:
    """A monthly cost budget of `usd` that notifies the alarm topic at 80 % actual and 100 %
    forecast spend (planned: moto cannot create it)."""
    planned = {c["address"]: c["change"] for c in plan["resource_changes"]}
    budget = planned["module.monitoring.aws_budgets_budget.monthly[0]"]
    assert budget["actions"] == ["create"]
    after = budget["after"]
    assert after["budget_type"] == "COST" and after["time_unit"] == "MONTHLY"
    assert float(after["limit_amount"]) == usd and after["limit_unit"] == "USD"
    notes = {(n["notification_type"], n["threshold"]) for n in after["notification"]}
    assert notes == {("ACTUAL", 80), ("FORECASTED", 100)}
    unknown = budget["after_unknown"]["notification"]
    assert all(n["subscriber_sns_topic_arns"] for n in unknown), "to the (new) alarm topic"


def test_full_has_nat_all_flows_per_url_response_time_and_a_budget(stack):
    ec2 = stack.client("ec2")
    assert len(stack.outputs["nat_gateway_ids"]) == 1
    (flow,) = ec2.describe_flow_logs()["FlowLogs"]
    assert flow["TrafficType"] == "ALL"
    ecs = stack.client("ecs")
    task = ecs.describe_task_definition(taskDefinition=stack.outputs["task_definition_arn"])
    daemon = next(
        c for c in task["taskDefinition"]["containerDefinitions"] if c["name"] == "upcheck"
    )
    env = {e["name"]: e["value"] for e in daemon["environment"]}
    assert env["UPCHECK_CLOUDWATCH_URL_METRICS"] == "ResponseTime"
    assert_budget(stack.https_plan, 1000)
    (endpoint,) = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert endpoint["VpcEndpointType"] == "Gateway"


# ---------------------------------------------------------------------------------------------
# CI roles
# ---------------------------------------------------------------------------------------------
def _trust(stack, kind: str) -> dict:
    role = stack.client("iam").get_role(RoleName=f"upcheck-github-{kind}")["Role"]
    document = role["AssumeRolePolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    (statement,) = document["Statement"]
    return statement


def test_each_ci_role_trusts_only_its_jobs_exact_oidc_subject(stack):
    arns = stack.outputs["github_role_arns"]
    assert set(arns) == {"release", "deploy", "plan", "apply"}
    (provider,) = stack.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    issuer = "token.actions.githubusercontent.com"
    assert provider["Arn"].endswith(f":oidc-provider/{issuer}")
    repo = "repo:acme/upcheck"
    wanted = {
        "release": ("StringLike", [f"{repo}:ref:refs/heads/main", f"{repo}:ref:refs/tags/v*"]),
        "deploy": ("StringEquals", [f"{repo}:environment:production-deploy"]),
        "plan": ("StringEquals", [f"{repo}:pull_request", f"{repo}:ref:refs/heads/main"]),
        "apply": ("StringEquals", [f"{repo}:environment:production-infra"]),
    }
    for kind, (test, subjects) in wanted.items():
        statement = _trust(stack, kind)
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"] == {"Federated": provider["Arn"]}
        condition = statement["Condition"]
        assert _as_list(condition[test][f"{issuer}:sub"]) == subjects, kind
        assert condition["StringEquals"][f"{issuer}:aud"] == "sts.amazonaws.com"
        assert not any("*" in s for s in subjects if kind != "release"), kind


def test_the_deploy_role_passes_the_two_ecs_roles_to_ecs_tasks_only(stack):
    iam = stack.client("iam")
    document = iam.get_role_policy(
        RoleName="upcheck-github-deploy", PolicyName="roll-out-the-image"
    )["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    statements = {s["Sid"]: s for s in document["Statement"]}
    passing = statements["PassTheTwoEcsRolesToEcsTasksOnly"]
    assert _as_list(passing["Action"]) == ["iam:PassRole"]
    assert sorted(_as_list(passing["Resource"])) == sorted(
        [
            f"arn:aws:iam::{ACCOUNT}:role/upcheck-execution",
            f"arn:aws:iam::{ACCOUNT}:role/upcheck-task",
        ]
    )
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    update = statements["UpdateTheUpcheckService"]
    assert _as_list(update["Resource"]) == [
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/upcheck/upcheck"
    ]


# The configuration keys each collector component documents (opentelemetry-collector and
# -contrib READMEs / config.go of: extension/sigv4authextension, extension/healthcheckextension,
# receiver/prometheusreceiver, processor/memorylimiterprocessor, processor/batchprocessor,
# processor/resourcedetectionprocessor, processor/resourceprocessor,
# exporter/prometheusremotewriteexporter). No collector binary installs from the registries
# these machines reach (PyPI, Debian, npm), so the rendered configuration is checked against
# these keys instead of being loaded by a collector.
DOCUMENTED_KEYS = {
    ("extensions", "sigv4auth"): {"region", "service", "assume_role"},
    ("extensions", "health_check"): {"endpoint", "path", "check_collector_pipeline", "tls"},
    ("receivers", "prometheus"): {"config", "trim_metric_suffixes", "target_allocator"},
    ("processors", "memory_limiter"): {
        "check_interval",
        "limit_mib",
        "spike_limit_mib",
        "limit_percentage",
        "spike_limit_percentage",
    },
    ("processors", "batch"): {"timeout", "send_batch_size", "send_batch_max_size"},
    ("processors", "resourcedetection/ecs"): {"detectors", "timeout", "override", "ecs"},
    ("processors", "resource/task_only"): {"attributes"},
    ("exporters", "prometheusremotewrite"): {
        "endpoint",
        "auth",
        "resource_to_telemetry_conversion",
        "namespace",
        "external_labels",
        "timeout",
        "headers",
        "remote_write_queue",
        "retry_on_failure",
        "tls",
    },
}


def _adot(stack) -> dict:
    ecs = stack.client("ecs")
    task = ecs.describe_task_definition(taskDefinition=stack.outputs["task_definition_arn"])
    containers = {c["name"]: c for c in task["taskDefinition"]["containerDefinitions"]}
    return containers


def test_the_collector_config_uses_only_documented_keys_and_limits_its_memory(stack):
    containers = _adot(stack)
    adot = containers["adot-collector"]
    config = yaml.safe_load(
        {e["name"]: e["value"] for e in adot["environment"]}["AOT_CONFIG_CONTENT"]
    )
    used = {
        (section, name): set(body or {})
        for section in ("extensions", "receivers", "processors", "exporters")
        for name, body in config[section].items()
    }
    assert set(used) == set(DOCUMENTED_KEYS)
    for component, keys in used.items():
        assert keys <= DOCUMENTED_KEYS[component], (component, keys - DOCUMENTED_KEYS[component])
    # Every component a pipeline names is configured, and every configured one is used.
    pipeline = config["service"]["pipelines"]["metrics"]
    assert set(pipeline["processors"]) == set(config["processors"])
    assert set(config["service"]["extensions"]) == set(config["extensions"])
    assert pipeline["processors"][0] == "memory_limiter", "the limiter must come first"
    attributes = config["processors"]["resource/task_only"]["attributes"]
    assert all(set(a) == {"key", "action"} for a in attributes)
    # A hard limit and a reservation, so a runaway collector is restarted instead of starving
    # the daemon, and ECS checks it through the image's own probe of the health_check port.
    assert 0 < adot["memoryReservation"] < adot["memory"] <= 512
    assert adot["healthCheck"]["command"] == ["CMD", "/healthcheck"]
    assert config["extensions"]["health_check"]["endpoint"] == "127.0.0.1:13133"
    assert containers["upcheck"]["essential"] is True and adot["essential"] is False

"""The whole stack applied to moto (server mode, 127.0.0.1) and destroyed again.

The module is applied once per run (module-scoped fixture; the destroy in its teardown must
leave an empty state), and each test then reads what was really created back from the emulator
with boto3. Moto cannot apply everything; what it lacks is listed in ops/terraform/README.md
and covered by `terraform validate`, checkov and the HCL tests instead.
"""

from __future__ import annotations

import json
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
}
APPLY_TIMEOUT = 480


class Stack:
    """An applied copy of the module and a way to talk to what it created."""

    def __init__(self, terraform, workdir: Path, env: dict[str, str], moto: MotoServer) -> None:
        self.terraform = terraform
        self.workdir = workdir
        self.env = env
        self.moto = moto
        self.outputs: dict = {}
        self.https_plan: dict = {}
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


@pytest.fixture(scope="module")
def stack(terraform, tmp_path_factory, checkov_install):
    # checkov_install: only so that its background install overlaps this slow apply.
    base = tmp_path_factory.mktemp("moto")
    workdir = tf.copy_module(base / "stack")
    https_dir = tf.copy_module(base / "https")
    services = tf.services_used(workdir)
    with MotoServer() as moto, ThreadPoolExecutor(max_workers=1) as background:
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
        https_vars = {**TFVARS, "domain_name": "status.example.com", "route53_zone_id": zone}
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
        deployed.https_plan = https_plan.result(timeout=APPLY_TIMEOUT)

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


def test_alarms_watch_the_spec_figures_and_notify_the_topic(stack):
    cloudwatch = stack.client("cloudwatch")
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNames=stack.outputs["alarm_names"])["MetricAlarms"]
    }
    assert len(alarms) == 4
    by_metric = {a["MetricName"]: a for a in alarms.values()}
    assert set(by_metric) == {
        "TargetsDown",
        "TargetsLoadSuccess",
        "TargetsTotal",
        "RunningTaskCount",
    }
    for metric in ("TargetsDown", "TargetsLoadSuccess", "TargetsTotal"):
        alarm = by_metric[metric]
        assert alarm["Namespace"] == "Upcheck"
        assert alarm["Dimensions"] == [{"Name": "Application", "Value": "upcheck"}]
    assert by_metric["TargetsDown"]["EvaluationPeriods"] == 5
    assert by_metric["TargetsLoadSuccess"]["ComparisonOperator"] == "LessThanThreshold"
    assert by_metric["TargetsLoadSuccess"]["Threshold"] == 1
    # reload 60 s, period 60 s: one failed load touches at most 2 periods; 3 means two failed.
    assert by_metric["TargetsLoadSuccess"]["EvaluationPeriods"] == 3
    assert by_metric["TargetsLoadSuccess"]["DatapointsToAlarm"] == 3
    assert by_metric["TargetsTotal"]["TreatMissingData"] == "breaching"
    assert by_metric["RunningTaskCount"]["Namespace"] == "ECS/ContainerInsights"
    # The threshold is the desired count (3 here), not "at least one".
    assert by_metric["RunningTaskCount"]["Threshold"] == 3
    assert by_metric["RunningTaskCount"]["ComparisonOperator"] == "LessThanThreshold"
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


def test_with_a_domain_the_plan_switches_to_https_and_redirects_http(stack):
    """HTTPS is planned, not applied: see the README note on moto and ACM validation."""
    plan = stack.https_plan
    changes = {c["address"]: c["change"]["actions"] for c in plan["resource_changes"]}
    lb = "module.load_balancer"
    assert changes[f"{lb}.aws_lb_listener.https[0]"] == ["create"]
    assert changes[f"{lb}.aws_lb_listener.http_redirect[0]"] == ["create"]
    assert f"{lb}.aws_lb_listener.http[0]" not in changes, "no plain-HTTP listener with a domain"
    assert changes[f"{lb}.aws_acm_certificate.this[0]"] == ["create"]
    assert changes[f"{lb}.aws_acm_certificate_validation.this[0]"] == ["create"]
    assert changes[f"{lb}.aws_route53_record.alias[0]"] == ["create"]
    assert any(a.startswith(f"{lb}.aws_route53_record.validation[") for a in changes)
    planned = {c["address"]: c["change"]["after"] for c in plan["resource_changes"]}
    https = planned[f"{lb}.aws_lb_listener.https[0]"]
    assert https["port"] == 443 and https["protocol"] == "HTTPS"
    assert https["ssl_policy"].startswith("ELBSecurityPolicy-TLS13")
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

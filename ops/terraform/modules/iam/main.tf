# Two roles, as ECS intends: the execution role is used by the ECS agent to start the task (pull
# the image, ship the logs); the task role is what the daemon's own boto3 calls run as. Both are
# inline policies naming exact resources: no "*" action anywhere, and "*" as a resource only for
# the calls AWS cannot scope to a resource: ecr:GetAuthorizationToken, cloudwatch:PutMetricData
# (pinned to one namespace by condition instead) and ecs:ListTasks (pinned to the stack's
# cluster by condition instead).

locals {
  log_group_arn      = "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:${var.log_group_name}"
  targets_object_arn = "arn:${var.partition}:s3:::${var.targets_bucket}/${var.targets_key}"
  results_bucket_arn = "arn:${var.partition}:s3:::${var.results_bucket}"

  # What the daemon writes (SPEC.md "Results file" and "Sharding"): the combined results file,
  # the status page beside it, named after it (results.json -> results.html), and with
  # sharding one part per member under <results key>.parts/.
  results_object_arns = [
    "${local.results_bucket_arn}/${var.results_key}",
    "${local.results_bucket_arn}/${trimsuffix(var.results_key, ".json")}.html",
  ]
  parts_arn_match = "${local.results_bucket_arn}/${var.results_parts_prefix}*"

  # With UPCHECK_SHARD=ecs the tasks share the list (SPEC.md "Sharding"): each finds its peers
  # with ecs:ListTasks and writes a part of the results that the merging task lists and reads.
  sharded = var.shard == "ecs"

  # The cluster is named after the stack (modules/service); its ARN is built here rather than read
  # from the service module, which itself needs this module's task role.
  cluster_arn     = "arn:${var.partition}:ecs:${var.region}:${var.account_id}:cluster/${var.cluster_name}"
  tasks_arn_match = "arn:${var.partition}:ecs:${var.region}:${var.account_id}:task/${var.cluster_name}/*"
}

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only ECS acting for this account, so another account's task definition cannot name us.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Execution role: image pull and logs
# ---------------------------------------------------------------------------------------------
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "ECS agent for ${var.name}: pull the image, write the task logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid = "EcrLogin"
    # GetAuthorizationToken is account-wide by design; it grants no access to any repository.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullTheUpcheckImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "ShipTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}:log-stream:*"]
  }

  # ${NAME} in the targets CSV: exactly the secrets and parameters named in container_secrets,
  # read by the ECS agent when the task starts (the task role never sees them).
  dynamic "statement" {
    for_each = length(local.secret_arns) > 0 ? [1] : []
    content {
      sid       = "ReadTheNamedSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.parameter_arns) > 0 ? [1] : []
    content {
      sid       = "ReadTheNamedParameters"
      actions   = ["ssm:GetParameters"]
      resources = local.parameter_arns
    }
  }
}

locals {
  # A Secrets Manager valueFrom may pick a JSON key (":key::"): the policy names the secret.
  secret_arns = sort(distinct([
    for arn in values(var.container_secrets) :
    join(":", slice(split(":", arn), 0, 7)) if can(regex(":secretsmanager:", arn))
  ]))
  parameter_arns = sort(distinct([
    for arn in values(var.container_secrets) : arn if can(regex(":ssm:", arn))
  ]))
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-image-and-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------------------------------------
# Task role: what the daemon itself may do
# ---------------------------------------------------------------------------------------------
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "upcheck daemon ${var.name}: read targets, write results, publish metrics"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "ReadTheTargetsFile"
    # GetObject also covers HeadObject and conditional (If-None-Match) GETs.
    actions   = ["s3:GetObject"]
    resources = [local.targets_object_arn]
  }

  statement {
    sid = "WriteAndPresignResults"
    # PutObject: results.json and results.html; GetObject: the presigned URL that GET /results
    # redirects to is signed with this role, so the role itself must be able to read them, and a
    # starting daemon (or the new owner of a URL) reads its history back from results.json.
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = local.results_object_arns
  }

  dynamic "statement" {
    for_each = local.sharded ? ["parts"] : []

    content {
      sid = "WriteAndReadShardParts"
      # Each member writes its own part; the merging member reads every fresh part back.
      actions   = ["s3:PutObject", "s3:GetObject"]
      resources = [local.parts_arn_match]
    }
  }

  dynamic "statement" {
    for_each = local.sharded ? ["parts"] : []

    content {
      sid = "ListShardParts"
      # ListObjectsV2 is s3:ListBucket on the bucket; the prefix condition limits it to listings
      # inside <results key>.parts/ (a listing without a prefix, or of any other one, is denied).
      actions   = ["s3:ListBucket"]
      resources = [local.results_bucket_arn]

      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${var.results_parts_prefix}*"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.sharded ? ["ecs"] : []

    content {
      sid = "ListTheTasksOfThisCluster"
      # ListTasks has no resource a policy can name for Fargate tasks (its resource type is the
      # EC2 container instance), so the ecs:cluster condition key is the scope, as in the Amazon
      # ECS developer guide's "List and describe task" examples.
      actions   = ["ecs:ListTasks"]
      resources = ["*"]

      condition {
        test     = "ArnEquals"
        variable = "ecs:cluster"
        values   = [local.cluster_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = local.sharded ? ["ecs"] : []

    content {
      sid = "DescribeTheTasksOfThisCluster"
      # The daemon reads its own task's `group` (service:<name>) to know which service's tasks
      # to list, and may check its peers' state.
      actions   = ["ecs:DescribeTasks"]
      resources = [local.tasks_arn_match]

      condition {
        test     = "ArnEquals"
        variable = "ecs:cluster"
        values   = [local.cluster_arn]
      }
    }
  }

  statement {
    sid       = "UseTheBucketKeyThroughS3Only"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }

  statement {
    sid = "PublishMetricsToOneNamespace"
    # PutMetricData has no resource-level permissions; the namespace condition is the scope.
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.cloudwatch_namespace]
    }
  }

  dynamic "statement" {
    for_each = var.enable_amp ? [var.amp_workspace_arn] : []

    content {
      sid       = "RemoteWriteToTheAmpWorkspace"
      actions   = ["aps:RemoteWrite"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "upcheck-daemon"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# GitHub Actions' access to this stack, in code: the account's GitHub OIDC provider (or an
# existing one) and one role per job kind, each trusted only for the exact OIDC subject of the
# job that uses it (SECURITY: the `sub` claim names the repository and the environment or ref).
#
#   role      job                                  subject (sub)
#   release   release.yml image (main, v* tags)    repo:<repo>:ref:refs/heads/main, repo:<repo>:ref:refs/tags/v*
#   deploy    release.yml deploy                   repo:<repo>:environment:<deploy_environment>
#   plan      infra.yml plan (PRs and main)        repo:<repo>:pull_request, repo:<repo>:ref:refs/heads/main
#   apply     infra.yml apply                      repo:<repo>:environment:<apply_environment>
#
# deploy and apply use two different GitHub environments, so the protection rules (reviewers,
# branches) of each can differ and neither role can be assumed by the other's job.

locals {
  issuer       = "token.actions.githubusercontent.com"
  provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : var.oidc_provider_arn
  sub          = "repo:${var.github_repository}"

  subjects = {
    release = { test = "StringLike", values = ["${local.sub}:ref:refs/heads/main", "${local.sub}:ref:refs/tags/v*"] }
    deploy  = { test = "StringEquals", values = ["${local.sub}:environment:${var.deploy_environment}"] }
    plan    = { test = "StringEquals", values = ["${local.sub}:pull_request", "${local.sub}:ref:refs/heads/main"] }
    apply   = { test = "StringEquals", values = ["${local.sub}:environment:${var.apply_environment}"] }
  }

  service_arn = "arn:${var.partition}:ecs:${var.region}:${var.account_id}:service/${var.cluster_name}/${var.service_name}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.issuer}"
  client_id_list = ["sts.amazonaws.com"]
  # IAM no longer checks the thumbprint for this issuer (it trusts its CA), but older provider
  # versions and the API still want one: GitHub's published intermediate thumbprints.
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
}

data "aws_iam_policy_document" "trust" {
  for_each = local.subjects

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = each.value.test
      variable = "${local.issuer}:sub"
      values   = each.value.values
    }
  }
}

resource "aws_iam_role" "ci" {
  for_each = local.subjects

  name                 = "${var.name}-github-${each.key}"
  description          = "GitHub Actions (${var.github_repository}) ${each.key} for ${var.name}"
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  max_session_duration = 3600
}

# release: push the image to the stack's repository and re-tag it, nothing else.
data "aws_iam_policy_document" "release" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PushAndTagTheUpcheckImage"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
      "ecr:DescribeImages", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
    ]
    resources = [var.ecr_repository_arn]
  }
}

# deploy: register a revision of the task definition and move the service to it. PassRole only
# for the two ECS roles of this stack, and only to ECS tasks.
data "aws_iam_policy_document" "deploy" {
  statement {
    sid = "ReadAndRegisterTaskDefinitions"
    # Neither action supports resource-level permissions.
    actions   = ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid       = "UpdateTheUpcheckService"
    actions   = ["ecs:DescribeServices", "ecs:UpdateService"]
    resources = [local.service_arn]
  }

  statement {
    sid       = "PassTheTwoEcsRolesToEcsTasksOnly"
    actions   = ["iam:PassRole"]
    resources = [var.execution_role_arn, var.task_role_arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# plan: read the state, and see what the stack is; the plan job runs with -lock=false.
data "aws_iam_policy_document" "plan" {
  statement {
    sid       = "ReadTheState"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = ["arn:${var.partition}:s3:::${var.state_bucket}", "arn:${var.partition}:s3:::${var.state_bucket}/*"]
  }
}

resource "aws_iam_role_policy" "release" {
  name   = "push-the-image"
  role   = aws_iam_role.ci["release"].id
  policy = data.aws_iam_policy_document.release.json
}

resource "aws_iam_role_policy" "deploy" {
  name   = "roll-out-the-image"
  role   = aws_iam_role.ci["deploy"].id
  policy = data.aws_iam_policy_document.deploy.json
}

resource "aws_iam_role_policy" "plan" {
  name   = "read-the-state"
  role   = aws_iam_role.ci["plan"].id
  policy = data.aws_iam_policy_document.plan.json
}

# Refreshing a plan reads every resource type of the stack: AWS's read-only policy.
resource "aws_iam_role_policy_attachment" "plan_read_only" {
  role       = aws_iam_role.ci["plan"].name
  policy_arn = "arn:${var.partition}:iam::aws:policy/ReadOnlyAccess"
}

# apply creates and changes every kind of resource in the stack, IAM roles included, and rolls
# the task definition out: only the protected apply environment's job can assume it.
resource "aws_iam_role_policy_attachment" "apply_admin" {
  #checkov:skip=CKV_AWS_274:Exists only with github_repository set (the module's count), for the apply role, whose trust is the one subject of the protected apply environment: applying this stack creates IAM roles, VPCs and everything else.
  role       = aws_iam_role.ci["apply"].name
  policy_arn = "arn:${var.partition}:iam::aws:policy/AdministratorAccess"
}

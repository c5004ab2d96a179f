# One customer-managed key for the stack's data at rest: the targets and results buckets, the
# ECR repository, the CloudWatch log groups and the alarm topic. The key policy lets the account
# administer it through IAM, and lets exactly two services use it on the stack's behalf:
# CloudWatch Logs (for this account's log groups) and the alarm senders, CloudWatch alarms,
# the AMP alert manager and AWS Budgets (to publish to the encrypted SNS topic). S3 and ECR use it through the calling principal's IAM permissions.

locals {
  account_root = "arn:${var.partition}:iam::${var.account_id}:root"
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: buckets, ECR, logs and the alarm topic"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersThroughIam"
        Effect    = "Allow"
        Principal = { AWS = local.account_root }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsThisAccountsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:*"
          }
        }
      },
      {
        Sid       = "AlarmsPublishToTheEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "aps.amazonaws.com", "budgets.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = var.account_id }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

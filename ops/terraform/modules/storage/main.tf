# Three private buckets (the two data buckets through modules/private_bucket):
#   targets  the CSV the daemon reads (KMS, versioned so a bad edit can be rolled back)
#   results  results.json and results.html the daemon writes, and with sharding one part per task
#            under <results key>.parts/ (KMS, versioned, short history)
#   logs     ALB and S3 server access logs (SSE-S3, because neither log delivery supports KMS)
# All three block public access, disable ACLs, and refuse plain-HTTP requests. The data buckets
# also deny object access to every principal except the task role and the listed admins, so a
# broad IAM grant elsewhere in the account does not reach them.

locals {
  object_principals = concat([var.task_role_arn], var.admin_principal_arns)

  # S3 refuses to turn on access logging until the destination's policy admits the logging
  # service, so the data buckets take the name from the policy resource, not the bucket.
  log_destination = aws_s3_bucket_policy.logs.bucket
}

module "targets" {
  source = "../private_bucket"

  name                    = var.targets_bucket
  kms_key_arn             = var.kms_key_arn
  object_principal_arns   = local.object_principals
  noncurrent_version_days = 90 # a bad edit of the CSV can be rolled back for three months
  access_log_bucket       = local.log_destination
  force_destroy           = var.force_destroy
}

module "results" {
  source = "../private_bucket"

  name                  = var.results_bucket
  kms_key_arn           = var.kms_key_arn
  object_principal_arns = local.object_principals
  # The daemon rewrites results.json every publish interval: keep one day of versions only.
  noncurrent_version_days = 1
  # Every task writes its part every publish interval (at most an hour) under its own task id,
  # so each deployment leaves the parts of the tasks it replaced behind: the merging task skips
  # them (older than three publish intervals), and this removes them a day later.
  expire_prefixes   = var.results_parts_prefix == "" ? {} : { (var.results_parts_prefix) = 1 }
  access_log_bucket = local.log_destination
  force_destroy     = var.force_destroy
}

# ---------------------------------------------------------------------------------------------
# Access logs
# ---------------------------------------------------------------------------------------------
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log destination; logging it into itself would loop.
  #checkov:skip=CKV_AWS_144:Access logs are kept in-region only; replication would double their cost for no operational gain.
  #checkov:skip=CKV_AWS_145:ALB access logs and S3 server access logs can only be delivered to SSE-S3 buckets, not SSE-KMS.
  #checkov:skip=CKV2_AWS_62:Nothing consumes log-delivery events; the logs are read on demand.
  bucket        = var.logs_bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

# Regions that existed before August 2022 deliver ALB logs from a regional ELB account; newer
# ones use the log-delivery service principal. Both are allowed, each to the ALB prefix only.
data "aws_elb_service_account" "this" {}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # One statement per source bucket, each limited to that bucket's prefix and ARN.
  dynamic "statement" {
    for_each = { targets = var.targets_bucket, results = var.results_bucket }

    content {
      sid       = "S3ServerAccessLogsFrom${title(statement.key)}"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.logs.arn}/s3/${statement.value}/*"]

      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [var.account_id]
      }

      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = ["arn:${var.partition}:s3:::${statement.value}"]
      }
    }
  }

  statement {
    sid       = "AlbAccessLogsLegacyRegions"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/alb/AWSLogs/${var.account_id}/*"]

    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }

  statement {
    sid       = "AlbAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/alb/AWSLogs/${var.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

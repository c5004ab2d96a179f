variable "name" {
  description = "Name prefix of the roles."
  type        = string
}

variable "account_id" {
  description = "Account id; only ECS tasks of this account may assume the roles."
  type        = string
}

variable "partition" {
  description = "AWS partition."
  type        = string
}

variable "region" {
  description = "Region of the stack."
  type        = string
}

variable "ecr_repository_arn" {
  description = "The one repository the execution role may pull from."
  type        = string
}

variable "log_group_name" {
  description = "The one log group the execution role may write the task's logs to."
  type        = string
}

variable "targets_bucket" {
  description = "Name of the bucket holding the targets CSV."
  type        = string
}

variable "targets_key" {
  description = "Key of the targets CSV; the task may read this object only."
  type        = string
}

variable "results_bucket" {
  description = "Name of the results bucket."
  type        = string
}

variable "results_prefix" {
  description = "Prefix the task may write results.json and status.html under (and read them back, to presign GETs)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the buckets; the task uses it only through S3."
  type        = string
}

variable "cloudwatch_namespace" {
  description = "The only CloudWatch namespace the task may publish metrics to."
  type        = string
}

variable "enable_amp" {
  description = "Whether the task remote-writes to an AMP workspace."
  type        = bool
}

variable "amp_workspace_arn" {
  description = "The AMP workspace the task may remote-write to (empty when enable_amp is false)."
  type        = string
}

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

variable "results_key" {
  description = "Key of the combined results file (UPCHECK_RESULTS, ending in .json); the task may write and read it and the status page beside it (<key without .json>.html)."
  type        = string
}

variable "results_parts_prefix" {
  description = "Key prefix of the per-member results parts (<results_key>.parts/): with sharding the task writes, reads and lists there."
  type        = string
}

variable "shard" {
  description = "UPCHECK_SHARD; \"ecs\" adds ecs:ListTasks and ecs:DescribeTasks on the cluster and access to the results parts."
  type        = string
}

variable "cluster_name" {
  description = "Name of the stack's ECS cluster; the task may list and describe the tasks of this cluster only."
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

variable "container_secrets" {
  description = "Environment variable name -> Secrets Manager secret or SSM parameter ARN, injected by ECS (see the root variable)."
  type        = map(string)
  default     = {}
}

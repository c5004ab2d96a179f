variable "account_id" {
  description = "Account id (log delivery is accepted for this account only)."
  type        = string
}

variable "partition" {
  description = "AWS partition."
  type        = string
}

variable "targets_bucket" {
  description = "Name of the bucket holding the targets CSV."
  type        = string
}

variable "results_bucket" {
  description = "Name of the bucket the daemon writes results.json and results.html to."
  type        = string
}

variable "results_parts_prefix" {
  description = "Key prefix of the per-task results parts (<results key>.parts/), whose abandoned objects expire after a day; empty without sharding."
  type        = string
}

variable "logs_bucket" {
  description = "Name of the bucket receiving ALB and S3 access logs."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the targets and results buckets."
  type        = string
}

variable "task_role_arn" {
  description = "The daemon's task role: the only principal (with admin_principal_arns) allowed to touch objects."
  type        = string
}

variable "admin_principal_arns" {
  description = "Further principals allowed to read and write objects (e.g. the CI role uploading the targets CSV)."
  type        = list(string)
}

variable "force_destroy" {
  description = "Allow deleting the buckets with objects in them."
  type        = bool
}

variable "access_log_retention_days" {
  description = "Days access logs are kept."
  type        = number
}

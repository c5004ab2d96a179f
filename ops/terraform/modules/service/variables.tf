variable "name" {
  description = "Name of the cluster, service and task family."
  type        = string
}

variable "region" {
  description = "Region (for awslogs and the collector's SigV4 signing)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the tasks run in: private ones (full profile) or public ones (lean)."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Give each task a public IP (lean profile: no NAT gateway)."
  type        = bool
}

variable "load_balanced" {
  description = "Whether a load balancer fronts the tasks (full profile)."
  type        = bool
}

variable "alb_security_group" {
  description = "Security group of the load balancer: the only source allowed to reach the tasks (null without one)."
  type        = string
}

variable "target_group_arn" {
  description = "Target group the service registers its tasks in (null without a load balancer)."
  type        = string
}

variable "image" {
  description = "Full image reference of the daemon."
  type        = string
}

variable "container_user" {
  description = "uid:gid the containers run as."
  type        = string
}

variable "task_cpu" {
  description = "Task CPU units."
  type        = number
}

variable "task_memory" {
  description = "Task memory in MiB."
  type        = number
}

variable "desired_count" {
  description = "Number of running tasks."
  type        = number
}

variable "shard" {
  description = "UPCHECK_SHARD: \"ecs\" (the service's running tasks share the list) or \"off\"."
  type        = string
}

variable "execution_role_arn" {
  description = "ECS execution role."
  type        = string
}

variable "task_role_arn" {
  description = "Role the daemon runs as."
  type        = string
}

variable "log_group_name" {
  description = "Log group of the containers."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the log group."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key of the log group."
  type        = string
}

variable "targets_uri" {
  description = "UPCHECK_TARGETS."
  type        = string
}

variable "results_uri" {
  description = "UPCHECK_RESULTS."
  type        = string
}

variable "probe_interval" {
  description = "UPCHECK_INTERVAL."
  type        = number
}

variable "probe_timeout" {
  description = "UPCHECK_TIMEOUT."
  type        = number
}

variable "probe_concurrency" {
  description = "UPCHECK_CONCURRENCY."
  type        = number
}

variable "reload_interval" {
  description = "UPCHECK_RELOAD_INTERVAL."
  type        = number
}

variable "publish_interval" {
  description = "UPCHECK_PUBLISH_INTERVAL."
  type        = number
}

variable "cloudwatch_namespace" {
  description = "UPCHECK_CLOUDWATCH_NAMESPACE."
  type        = string
}

variable "url_metrics" {
  description = "UPCHECK_CLOUDWATCH_URL_METRICS."
  type        = string
}

variable "app_name" {
  description = "UPCHECK_APP_NAME."
  type        = string
}

variable "enable_amp" {
  description = "Run the ADOT collector sidecar."
  type        = bool
}

variable "adot_image" {
  description = "ADOT collector image."
  type        = string
}

variable "amp_remote_write_url" {
  description = "Remote-write URL of the AMP workspace (empty without AMP)."
  type        = string
}

variable "amp_scrape_interval" {
  description = "Scrape interval of the collector, in seconds."
  type        = number
}

variable "container_secrets" {
  description = "Environment variable name -> Secrets Manager secret or SSM parameter ARN, injected by ECS (see the root variable)."
  type        = map(string)
  default     = {}
}

variable "name" {
  description = "Name prefix of the topic, alarms and dashboard."
  type        = string
}

variable "region" {
  description = "Region of the dashboard's widgets."
  type        = string
}

variable "account_id" {
  description = "Account whose alarms may publish to the topic."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the topic."
  type        = string
}

variable "alarm_email" {
  description = "E-mail subscribed to the topic; empty for none."
  type        = string
}

variable "cloudwatch_namespace" {
  description = "Namespace the daemon publishes to."
  type        = string
}

variable "app_name" {
  description = "Value of the Application dimension."
  type        = string
}

variable "period" {
  description = "Alarm period in seconds (a whole number of minutes, at least the publish interval)."
  type        = number
}

variable "targets_down_periods" {
  description = "Periods with a URL down before the TargetsDown alarm fires."
  type        = number
}

variable "silence_periods" {
  description = "Periods without data before the silence alarm fires."
  type        = number
}

variable "cluster_name" {
  description = "ECS cluster of the service."
  type        = string
}

variable "service_name" {
  description = "ECS service whose running tasks are watched."
  type        = string
}

variable "desired_count" {
  description = "Tasks that should be running (the alarm threshold); the task-count alarm exists only when it is above 0."
  type        = number
}

variable "alb_arn_suffix" {
  description = "LoadBalancer dimension for the dashboard; empty without a load balancer (lean profile)."
  type        = string
}

variable "target_group_suffix" {
  description = "TargetGroup dimension for the dashboard."
  type        = string
}

variable "log_group_name" {
  description = "Log group shown on the dashboard."
  type        = string
}

variable "url_metrics_published" {
  description = "Whether per-URL metrics are published (adds a per-URL widget)."
  type        = bool
}

variable "reload_interval" {
  description = "Seconds between two loads of the targets CSV (UPCHECK_RELOAD_INTERVAL): how long one failed load keeps TargetsLoadSuccess at 0."
  type        = number
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget in USD (AWS Budgets, notifying the topic); 0 for none."
  type        = number
}

variable "budget_tag_filter" {
  description = "Cost allocation tag filter of the budget (user:Application$<name>); empty for the whole account."
  type        = string
}

variable "load_balanced" {
  description = "Whether a load balancer fronts the service (full profile): adds its dashboard widget."
  type        = bool
}

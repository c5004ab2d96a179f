variable "name" {
  description = "Name prefix of the load balancer resources."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets (one per AZ) the load balancer lives in: private ones when internal, public ones when internet-facing."
  type        = list(string)
}

variable "ingress_cidrs" {
  description = "CIDR blocks allowed to reach the listeners."
  type        = list(string)
}

variable "internal" {
  description = "Internal instead of internet-facing."
  type        = bool
}

variable "deletion_protection" {
  description = "Protect the load balancer against deletion."
  type        = bool
}

variable "access_logs_bucket" {
  description = "Bucket receiving the access logs (under alb/)."
  type        = string
}

variable "container_port" {
  description = "Port the daemon listens on inside the task."
  type        = number
}

variable "health_check_path" {
  description = "Path of the daemon's liveness endpoint (SPEC.md: GET /health)."
  type        = string
}

variable "domain_name" {
  description = "Host name for HTTPS; with certificate_arn also empty, plain HTTP (internal only)."
  type        = string
}

variable "route53_zone_id" {
  description = "Hosted zone for certificate validation and the alias record; may be empty."
  type        = string
}

variable "certificate_arn" {
  description = "Existing ACM certificate; empty to create one."
  type        = string
}

variable "authentication" {
  description = "Authenticate action of the HTTPS listener (root variable alb_authentication)."
  type = object({
    type = string
    oidc = optional(object({
      issuer                 = string
      authorization_endpoint = string
      token_endpoint         = string
      user_info_endpoint     = string
      client_id              = string
      scope                  = optional(string, "openid")
    }))
    cognito = optional(object({
      user_pool_arn       = string
      user_pool_client_id = string
      user_pool_domain    = string
    }))
    session_timeout = optional(number, 28800)
  })
}

variable "oidc_client_secret" {
  description = "Client secret of the OIDC application; empty unless authentication.type is oidc."
  type        = string
  sensitive   = true
}

variable "enable_waf" {
  description = "Attach a WAF web ACL."
  type        = bool
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes per client IP before WAF blocks it."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key for the WAF log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the WAF log group."
  type        = number
}

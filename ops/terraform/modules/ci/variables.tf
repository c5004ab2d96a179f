variable "name" {
  description = "Name prefix of the roles."
  type        = string
}

variable "account_id" {
  description = "Account of the stack."
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

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows may assume the roles."
  type        = string
}

variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider (false: use oidc_provider_arn; an account has one per issuer)."
  type        = bool
}

variable "oidc_provider_arn" {
  description = "ARN of an existing GitHub OIDC provider (when create_oidc_provider is false)."
  type        = string
}

variable "deploy_environment" {
  description = "GitHub environment of release.yml's deploy job."
  type        = string
}

variable "apply_environment" {
  description = "GitHub environment of infra.yml's apply job."
  type        = string
}

variable "ecr_repository_arn" {
  description = "The repository the release role pushes to."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster of the service."
  type        = string
}

variable "service_name" {
  description = "ECS service the deploy role updates."
  type        = string
}

variable "execution_role_arn" {
  description = "ECS execution role the deploy role may pass (to ECS tasks only)."
  type        = string
}

variable "task_role_arn" {
  description = "Task role the deploy role may pass (to ECS tasks only)."
  type        = string
}

variable "state_bucket" {
  description = "S3 bucket of the Terraform state the plan role reads."
  type        = string
}

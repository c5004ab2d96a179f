variable "name" {
  description = "Name prefix; the key alias is alias/<name>."
  type        = string
}

variable "region" {
  description = "Region of the stack (the CloudWatch Logs service principal is regional)."
  type        = string
}

variable "account_id" {
  description = "Account that owns the key."
  type        = string
}

variable "partition" {
  description = "AWS partition (aws, aws-cn, aws-us-gov)."
  type        = string
}

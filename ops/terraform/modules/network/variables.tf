variable "name" {
  description = "Name prefix of the network resources."
  type        = string
}

variable "cidr" {
  description = "CIDR block of the VPC."
  type        = string
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per AZ instead of a single shared one."
  type        = bool
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow-log log group."
  type        = string
}

variable "flow_log_retention_days" {
  description = "Retention of the flow-log log group."
  type        = number
}

variable "flow_log_traffic" {
  description = "Traffic the flow logs record: ALL or REJECT."
  type        = string
}

variable "nat_gateway" {
  description = "Route the private subnets out through NAT (full profile); without, no NAT gateway exists."
  type        = bool
}

variable "account_id" {
  description = "Account id, used to scope the flow-log role's trust."
  type        = string
}

variable "availability_zones" {
  description = "The two AZ names to use; empty for <region>a and <region>b."
  type        = list(string)
}

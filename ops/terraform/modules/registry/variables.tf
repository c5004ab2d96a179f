variable "name" {
  description = "Name of the ECR repository."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the images."
  type        = string
}

variable "keep_images" {
  description = "How many tagged images the lifecycle policy keeps (older ones are expired)."
  type        = number
  default     = 30
}

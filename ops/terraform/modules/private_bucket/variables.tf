variable "name" {
  description = "Bucket name."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for default encryption (SSE-KMS with a bucket key)."
  type        = string
}

variable "object_principal_arns" {
  description = "The only principals allowed to read, write or delete objects; everybody else is denied by the bucket policy."
  type        = list(string)
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
}

variable "force_destroy" {
  description = "Allow deleting the bucket with objects in it."
  type        = bool
}

variable "access_log_bucket" {
  description = "Bucket receiving this bucket's server access logs (under s3/<name>/)."
  type        = string
}

variable "expire_prefixes" {
  description = "Key prefixes whose objects are expired (a delete marker is added) this many days after their last write: objects the writer rewrites all the time, so only abandoned ones ever get that old."
  type        = map(number)
  default     = {}
}

variable "name" {
  description = "Alias of the Amazon Managed Service for Prometheus workspace."
  type        = string
}

terraform {
  # 1.9 brings variable validations that may refer to other variables (used for HTTPS inputs).
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60.0, < 6.0.0"
    }
  }

  # State: this root module declares no backend so that `terraform init -backend=false` and
  # local experiments work as is. For a shared deployment copy backend.tf.example to
  # backend.tf (S3 bucket + native S3 locking); see README.md, "Remote state".
}

provider "aws" {
  region = var.aws_region

  # Every resource carries these tags, so cost reports and audits can find the whole stack.
  default_tags {
    tags = merge(
      {
        Application = var.name
        ManagedBy   = "terraform"
        Component   = "upcheck"
      },
      var.tags,
    )
  }
}

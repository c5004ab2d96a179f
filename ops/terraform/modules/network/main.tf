# A VPC over two availability zones. Full profile: public subnets hold the internet-facing
# load balancer (if any) and the NAT gateway(s); the tasks live in private subnets with no
# public IPs and leave through NAT. Lean profile: no NAT; the tasks run in the public subnets
# with a public IP (their security group still admits nothing from outside) and the private
# subnets stay empty. Either way S3 is reached through a gateway endpoint, free of NAT and
# data-transfer charges.

data "aws_region" "current" {}

# The AZ set is pinned by name (the first two of the region unless given), so a zone AWS adds
# later never changes the subnets; the data source fails the plan if a named zone is unavailable.
data "aws_availability_zones" "pinned" {
  state = "available"

  filter {
    name   = "zone-name"
    values = local.az_names
  }
}

locals {
  az_names = length(var.availability_zones) > 0 ? var.availability_zones : ["${data.aws_region.current.name}a", "${data.aws_region.current.name}b"]
  azs      = sort(data.aws_availability_zones.pinned.names)

  # /20 subnets: public ones at the bottom of the range, private ones from the middle up, so
  # more AZs can be added later without renumbering.
  public_cidrs  = { for i, az in local.azs : az => cidrsubnet(var.cidr, 20 - tonumber(split("/", var.cidr)[1]), i) }
  private_cidrs = { for i, az in local.azs : az => cidrsubnet(var.cidr, 20 - tonumber(split("/", var.cidr)[1]), i + 8) }

  # AZs that get a NAT gateway, and the NAT gateway each private subnet routes through.
  nat_azs = var.nat_gateway ? (var.nat_gateway_per_az ? local.azs : [local.azs[0]]) : []
  nat_for = { for az in local.azs : az => var.nat_gateway_per_az ? az : local.azs[0] }
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# The default security group is left with no rules at all, so nothing can use it by accident.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-default-deny" }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = var.name }
}

resource "aws_subnet" "public" {
  for_each = local.public_cidrs

  vpc_id                  = aws_vpc.this.id
  availability_zone       = each.key
  cidr_block              = each.value
  map_public_ip_on_launch = false # the ALB, NAT and lean tasks get their addresses explicitly

  tags = { Name = "${var.name}-public-${each.key}", Tier = "public" }
}

resource "aws_subnet" "private" {
  for_each = local.private_cidrs

  vpc_id            = aws_vpc.this.id
  availability_zone = each.key
  cidr_block        = each.value

  tags = { Name = "${var.name}-private-${each.key}", Tier = "private" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  for_each = aws_subnet.public

  subnet_id      = each.value.id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  for_each = toset(local.nat_azs)

  domain = "vpc"

  tags = { Name = "${var.name}-nat-${each.key}" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  for_each = toset(local.nat_azs)

  allocation_id = aws_eip.nat[each.key].id
  subnet_id     = aws_subnet.public[each.key].id

  tags = { Name = "${var.name}-${each.key}" }

  depends_on = [aws_internet_gateway.this]
}

# One route table per private subnet, so switching nat_gateway_per_az only changes routes.
resource "aws_route_table" "private" {
  for_each = aws_subnet.private

  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-private-${each.key}" }
}

resource "aws_route" "private_nat" {
  for_each = var.nat_gateway ? aws_route_table.private : {}

  route_table_id         = each.value.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[local.nat_for[each.key]].id
}

resource "aws_route_table_association" "private" {
  for_each = aws_subnet.private

  subnet_id      = each.value.id
  route_table_id = aws_route_table.private[each.key].id
}

# S3 (targets, results, ECR's layers) through a gateway endpoint: no NAT processing, no
# data-transfer charge, and the traffic stays on AWS's network.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = concat([aws_route_table.public.id], [for t in aws_route_table.private : t.id])

  tags = { Name = "${var.name}-s3" }
}

# VPC flow logs, for incident response: all traffic (full) or only what the security groups
# and network ACLs rejected (lean: the part worth keeping, at a fraction of the volume).
resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/vpc/${var.name}/flow-logs"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "flow_logs_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-vpc-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_trust.json
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "this" {
  vpc_id          = aws_vpc.this.id
  traffic_type    = var.flow_log_traffic
  iam_role_arn    = aws_iam_role.flow_logs.arn
  log_destination = aws_cloudwatch_log_group.flow_logs.arn
}

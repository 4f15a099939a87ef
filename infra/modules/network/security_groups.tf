# Who may talk to whom. PostgreSQL (5432) is reachable only from the Lambda, MLflow, service and
# dashboard groups; the tasks only from the load balancer; the load balancer only from
# allowed_cidr_blocks (set in the services module).

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:Attached to the load balancer (module services) through this module's output; checkov does not follow the ID across modules.
  name        = "${var.name}-alb"
  description = "Load balancer in front of MLflow, the BentoML service and the dashboard"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "lambda" {
  #checkov:skip=CKV2_AWS_5:Attached to the ingestion Lambda (module ingestion) through this module's output; checkov does not follow the ID across modules.
  name        = "${var.name}-ingestion-lambda"
  description = "Ingestion Lambda: out to the exchange API and AWS APIs (443) and to PostgreSQL"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "mlflow" {
  #checkov:skip=CKV2_AWS_5:Attached to the MLflow ECS service (module services) through this module's output; checkov does not follow the ID across modules.
  name        = "${var.name}-mlflow"
  description = "MLflow tracking server tasks"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "service" {
  #checkov:skip=CKV2_AWS_5:Attached to the BentoML ECS service (module services) through this module's output; checkov does not follow the ID across modules.
  name        = "${var.name}-service"
  description = "BentoML prediction service tasks"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "dashboard" {
  #checkov:skip=CKV2_AWS_5:Attached to the dashboard ECS service (module services) through this module's output; checkov does not follow the ID across modules.
  name        = "${var.name}-dashboard"
  description = "Streamlit dashboard tasks"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "database" {
  #checkov:skip=CKV2_AWS_5:Attached to the RDS instance (module database) through this module's output; checkov does not follow the ID across modules.
  name        = "${var.name}-database"
  description = "RDS PostgreSQL: reachable only from the Lambda, MLflow, service and dashboard groups"
  vpc_id      = aws_vpc.main.id
}

locals {
  database_clients = {
    lambda    = aws_security_group.lambda.id
    mlflow    = aws_security_group.mlflow.id
    service   = aws_security_group.service.id
    dashboard = aws_security_group.dashboard.id
  }
  # Task groups, their container port and what the load balancer checks.
  tasks = {
    mlflow    = { sg = aws_security_group.mlflow.id, port = 5000 }
    service   = { sg = aws_security_group.service.id, port = 3000 }
    dashboard = { sg = aws_security_group.dashboard.id, port = 8501 }
  }
  # Groups that reach AWS APIs, ECR and (Lambda) the exchange API over HTTPS through NAT.
  https_out = {
    lambda    = aws_security_group.lambda.id
    mlflow    = aws_security_group.mlflow.id
    service   = aws_security_group.service.id
    dashboard = aws_security_group.dashboard.id
  }
}

resource "aws_vpc_security_group_ingress_rule" "database_from_clients" {
  for_each                     = local.database_clients
  security_group_id            = aws_security_group.database.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from ${each.key}"
}

resource "aws_vpc_security_group_egress_rule" "clients_to_database" {
  for_each                     = local.database_clients
  security_group_id            = each.value
  referenced_security_group_id = aws_security_group.database.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL to the database"
}

resource "aws_vpc_security_group_egress_rule" "https_out" {
  for_each          = local.https_out
  security_group_id = each.value
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS to AWS APIs, ECR and the exchange API (through NAT)"
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  for_each                     = local.tasks
  security_group_id            = each.value.sg
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = "${each.key} from the load balancer"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  for_each                     = local.tasks
  security_group_id            = aws_security_group.alb.id
  referenced_security_group_id = each.value.sg
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = "Load balancer to ${each.key}"
}

# The service and the dashboard read the model registry from MLflow inside the VPC.
resource "aws_vpc_security_group_ingress_rule" "mlflow_from_clients" {
  for_each = {
    service   = aws_security_group.service.id
    dashboard = aws_security_group.dashboard.id
  }
  security_group_id            = aws_security_group.mlflow.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  description                  = "MLflow from ${each.key}"
}

resource "aws_vpc_security_group_egress_rule" "clients_to_mlflow" {
  for_each = {
    service   = aws_security_group.service.id
    dashboard = aws_security_group.dashboard.id
  }
  security_group_id            = each.value
  referenced_security_group_id = aws_security_group.mlflow.id
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  description                  = "${each.key} to MLflow"
}

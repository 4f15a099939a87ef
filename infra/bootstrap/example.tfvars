# Placeholders: the state bucket name must be globally unique.
region            = "eu-central-1"
state_bucket_name = "example-trendcast-terraform-state"
lock_table_name   = "trendcast-terraform-locks"

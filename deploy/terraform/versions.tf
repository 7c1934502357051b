# abgate on Google Cloud: the gateway on Cloud Run, Cloud SQL for Postgres, Memorystore for
# Redis (with read replicas), the exposure log routed to Cloud Storage and BigQuery, batch and
# scheduled reports as Cloud Run Jobs. docs/operators.md, "Deploy on Google Cloud".
#
# Checked here with checkov and parsed by tests/deploy/test_terraform.py (no terraform
# providers can be downloaded on the development machines): `terraform validate` and `plan`
# run first in your project.
terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.10, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
  }
  # Keep state in a bucket of its own (it holds the database password and the Redis AUTH
  # string, as every state of these resources does), e.g.:
  # backend "gcs" { bucket = "PROJECT-tfstate"  prefix = "abgate" }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

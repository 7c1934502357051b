# Artifact Registry for the two images (Containerfile targets gateway and batch):
#   podman build --target gateway -t REGION-docker.pkg.dev/PROJECT/abgate/gateway:TAG .
#   podman push REGION-docker.pkg.dev/PROJECT/abgate/gateway:TAG
resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:Google-managed encryption at rest; images hold no data (set kms_key_name for customer-managed keys).
  repository_id = var.name
  location      = var.region
  format        = "DOCKER"
  description   = "abgate gateway and batch images"
  docker_config {
    immutable_tags = true
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }
}

locals {
  registry = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

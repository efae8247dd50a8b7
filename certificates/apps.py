from django.apps import AppConfig


class CertificatesConfig(AppConfig):
    name = "certificates"
    verbose_name = "Client certificates"

    def ready(self) -> None:
        from certificates import (
            signals,  # noqa: F401  (connects the receivers)
            tasks,  # noqa: F401  (registers the tasks that certificates.enqueue queues by name)
        )

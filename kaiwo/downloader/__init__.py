"""The download job: ``python -m kaiwo.downloader CONFIG`` fills a workload's volumes before it starts.

``CONFIG`` is the ``config.yaml`` of the ``<name>-download`` ConfigMap that kaiwo.translate.storage renders
(see docs/downloads.md). One module per source type (s3, gcs, azure, git, huggingface) on a small core:
kaiwo.downloader.core (errors, secrets, atomic and resumable file writes, the worker pool) and
kaiwo.downloader.buckets (files and globbed folders of any object store, through obstore).

The operator never imports this package: its dependencies are the ``kaiwo[downloader]`` extra.
"""

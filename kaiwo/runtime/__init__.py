"""The generic controller runtime: API client, informers, workqueue, controllers, leader election.

Nothing in this package knows about Kaiwo; it could run any operator.
"""

"""Sharding: several upcheck processes share one targets list, each probing its own share.

:mod:`daemon.sharding.rendezvous` decides which member owns a URL; it depends on nothing but
the member ids, so every member computes the same answer without talking to the others.
:mod:`daemon.sharding.membership` says who the members are: fixed (``--shard INDEX/COUNT``) or
the running tasks of this task's ECS service (``--shard ecs``).
"""

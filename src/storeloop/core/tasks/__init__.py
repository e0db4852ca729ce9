"""The durable work engine on top of ``django_tasks`` + ``django-tasks-db``.

django-tasks-db stores and runs tasks; this package adds what it lacks:

* ``durable_task`` — declares a task with its retry policy (max attempts, back-off) and queue.
* ``enqueue_on_commit`` — the task row becomes visible only when the caller's transaction commits.
* ``worker.LeasedWorker`` — claims a task under a renewable lease, retries transient failures with
  exponential back-off and full jitter (honouring ``Retry-After``), dead-letters terminal and
  exhausted ones, and fences its completion write against a lost lease.
* ``reaper.reap_expired_leases`` — hands the work of dead workers back to the queue.
* ``scheduler`` — recurring jobs, one active scheduler at a time.
"""

from storeloop.core.tasks.enqueue import enqueue_on_commit
from storeloop.core.tasks.registry import TaskPolicy, durable_task, policy_for

__all__ = ["TaskPolicy", "durable_task", "enqueue_on_commit", "policy_for"]

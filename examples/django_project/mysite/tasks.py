"""The project's tasks: plain Django tasks, nothing of the queue's in them."""

try:
    from django.tasks import task  # Django 6.0
except ImportError:  # Python 3.11: the django-tasks backport, the same API
    from django_tasks import task


@task(queue_name="emails", priority=10)
def send_welcome(address: str, name: str) -> dict[str, str]:
    # A real project sends the e-mail here (django.core.mail.send_mail).
    return {"to": address, "subject": f"Welcome, {name}!"}

"""Two views: POST /welcome/ enqueues a task, GET /tasks/<id>/ shows its result."""

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from mysite.tasks import send_welcome

try:
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:
    from django_tasks.exceptions import TaskResultDoesNotExist


@csrf_exempt
@require_POST
def welcome(request: HttpRequest) -> JsonResponse:
    result = send_welcome.enqueue(request.POST["address"], name=request.POST.get("name", "you"))
    return JsonResponse({"id": result.id, "status": result.status}, status=202)


@require_GET
def show(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        result = send_welcome.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": f"no task {result_id}"}, status=404)
    body: dict[str, Any] = {"id": result.id, "status": result.status}
    if result.status == "SUCCESSFUL":
        body["return_value"] = result.return_value
    elif result.is_finished:
        body["errors"] = [error.exception_class_path for error in result.errors]
    return JsonResponse(body)


urlpatterns = [
    path("welcome/", welcome),
    path("tasks/<str:result_id>/", show),
]

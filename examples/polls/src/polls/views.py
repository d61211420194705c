from django.db import connection
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Choice, Question


def healthz(request):
    """Ready when the database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database error means not ready
        return HttpResponse(f"database: {exc.__class__.__name__}", status=503)
    return HttpResponse("ok")


def index(request):
    latest = Question.objects.order_by("-pub_date")[:5]
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"questions": [q.question_text for q in latest]})
    return render(request, "polls/index.html", {"latest_question_list": latest})


@csrf_exempt
@require_POST
def vote(request, question_id):
    question = get_object_or_404(Question, pk=question_id)
    choice = get_object_or_404(Choice, pk=request.POST["choice"], question=question)
    choice.votes = F("votes") + 1
    choice.save()
    return JsonResponse({"question": question.id, "choice": choice.id})

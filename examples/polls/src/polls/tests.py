import datetime

from django.test import TestCase
from django.utils import timezone

from .models import Choice, Question


class QuestionModelTests(TestCase):
    def test_was_published_recently_with_future_question(self):
        future_question = Question(pub_date=timezone.now() + datetime.timedelta(days=30))
        self.assertIs(future_question.was_published_recently(), False)


class ViewTests(TestCase):
    def test_healthz_answers_when_the_database_does(self):
        self.assertEqual(self.client.get("/healthz").status_code, 200)

    def test_index_lists_the_latest_questions(self):
        Question.objects.create(question_text="What's new?", pub_date=timezone.now())
        reply = self.client.get("/polls/", headers={"Accept": "application/json"})
        self.assertEqual(reply.json(), {"questions": ["What's new?"]})

    def test_a_vote_counts(self):
        question = Question.objects.create(question_text="Q", pub_date=timezone.now())
        choice = Choice.objects.create(question=question, choice_text="A")
        self.assertEqual(self.client.post(f"/polls/{question.id}/vote/", {"choice": choice.id}).status_code, 200)
        choice.refresh_from_db()
        self.assertEqual(choice.votes, 1)

# polls 3.0.0's migration fails half way: the deploy must stop before any host switches.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("polls", "0002_question_author")]

    operations = [migrations.RunSQL("SELECT 1 / 0")]

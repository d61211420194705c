# polls 2.0.0's migration: an expand step - a column with a database default, so that
# 1.0.0, which does not know it, still inserts questions after a rollback.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("polls", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="question", name="author", field=models.CharField(max_length=100, db_default="anonymous")
        ),
    ]

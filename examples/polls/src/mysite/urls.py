"""
URL configuration for mysite project.
"""

from django.contrib import admin
from django.urls import include, path
from polls.views import healthz

urlpatterns = [
    path("healthz", healthz),
    path("polls/", include("polls.urls")),
    path("admin/", admin.site.urls),
]

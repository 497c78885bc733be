"""Mail: the office mailbox's settings, fetching the reports, sending the feedback.
"""

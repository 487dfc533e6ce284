"""Timing reply templates over HTTP: the render of a saved template for a ticket, and the
template suggestions for a ticket over a library of 500 (issue 4, "Speed").

Targets: ``POST /api/v1/templates/{id}/render`` p95 ≤ 2 ms, ``GET /api/v1/tickets/{id}/
template-suggestions`` p95 ≤ 20 ms, both at the server (``server-timing: app;dur=X``, as in
``ticket_list``), on PostgreSQL; SQLite is measured too and shown beside it.

Each database gets its own scratch copy, seeded from empty (PostgreSQL: a database created on the
benchmark's server and dropped afterwards, as the sync benchmark does; SQLite: a temp file): a
mailbox, an agent (the caller) and a lead, 200 tickets of customers writing in English or Russian
(some with a time zone on record, some only with the UTC offset of their mail), one inbound
message each, the default library plus generated shared templates up to 500, and a few hundred
recorded uses so the usage half of the ranking has history to read.

What is timed, with the real app under uvicorn in a child process (``server.running_server``):

* the floor: ``GET /api/v1/agents/me``, what any authenticated request costs (token check, unit
  of work, serialisation) — the part of the render's figure that is not the render's own;
* render, first of each template: every template once, in random order, each for a random
  ticket — what the first render after a restart costs (the sandbox compiles the source);
* render: random (template, ticket) pairs after those, the steady state the target is about;
* suggestions, cold: the first call, which builds the ranking index over the whole library;
* suggestions: random tickets with the index cached, the steady state the target is about;
* suggestions after a recorded use: ``POST .../uses`` changes what the index was built from, so
  the next call rebuilds it — how often that happens depends on how often agents insert
  templates.

A plausibility check guards each figure: renders are counted with their warnings (a template
that rendered empty would be fast and wrong), and each suggestion list is checked for a template
on the topic the customer wrote about.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
from sqlalchemy import func, insert, select, update

from app.agents.models import Agent, Role
from app.agents.service import create_agent, issue_token
from app.customers.models import Customer
from app.db import migrations
from app.db.session import Database
from app.mailboxes.service import create_mailbox
from app.messages.models import Direction, Message
from app.tickets.models import Priority, Status, Ticket, TicketCounter
from benchmarks import seed as bench_seed
from benchmarks.server import running_server
from benchmarks.sync_speed import Verdict, scratch_postgres_database
from benchmarks.ticket_list import SERVER_TIMING, percentile
from templates_replies import sandbox
from templates_replies import service as template_service
from templates_replies.library import seed_default_templates
from templates_replies.models import ReplyTemplate, TemplateUse, Visibility
from templates_replies.schemas import TemplateCreate
from templates_replies.service import build_template, validate_source

RENDER_BUDGET_MS = 2.0
SUGGEST_BUDGET_MS = 20.0
SUGGEST_LIMIT = 3
PG_DATABASE = "inboxdesk_templates_bench"
DOMAIN = bench_seed.BENCH_DOMAIN
CALLER_EMAIL = f"agent@{DOMAIN}"
LEAD_EMAIL = f"lead@{DOMAIN}"
MAILBOX_EMAIL = f"support@{DOMAIN}"


@dataclass(frozen=True)
class Options:
    tickets: int = 200
    templates: int = 500  # in all, the default library included
    uses: int = 400
    requests: int = 400  # timed, per steady-state measurement
    warmup: int = 50
    rebuilds: int = 10  # (record a use, then suggest) rounds
    seed: int = 4


# ------------------------------------------------------------------------------------ the texts


@dataclass(frozen=True)
class Lines:
    """One topic in one language: template names, what customers write, what agents answer."""

    title: str
    aspects: tuple[str, ...]
    asks: tuple[str, ...]
    answers: tuple[str, ...]


def _topic(en: Lines, ru: Lines) -> dict[str, Lines]:
    return {"en": en, "ru": ru}


# What a SaaS / online shop support team answers every day. The answers may use the variables.
TOPICS: dict[str, dict[str, Lines]] = {
    "refund": _topic(
        Lines(
            "Refund",
            ("card payment", "partial refund", "after the trial", "annual plan", "processing"),
            (
                "I would like a refund for my last payment, I did not use the service at all.",
                "Can you refund the money for the order? The item never worked properly.",
                "How long does a refund take to reach my card? It has been a week already.",
            ),
            (
                "We have issued a full refund of your last payment to the card it was made with.",
                "Refunds usually reach the card within 5 to 10 business days, depending on "
                "your bank.",
                "The refund for ticket #{{ ticket.number }} has been approved by our billing team.",
                "As your plan was used for part of the month, we refunded the unused days.",
                "You will receive a separate email with the refund receipt for your records.",
                "If the refund is not on your statement after ten business days, please send "
                "us a screenshot of the statement and we will check with the payment provider.",
            ),
        ),
        Lines(
            "Возврат средств",
            ("оплата картой", "частичный возврат", "после пробного периода", "годовой тариф"),
            (
                "Прошу вернуть деньги за последний платёж, я не пользовался сервисом.",
                "Верните, пожалуйста, деньги за заказ, товар так и не заработал.",
                "Сколько идёт возврат на карту? Прошла уже неделя, денег нет.",
            ),
            (
                "Мы оформили полный возврат последнего платежа на карту, с которой он был сделан.",
                "Обычно деньги возвращаются на карту за 5–10 рабочих дней, срок зависит от "
                "вашего банка.",
                "Возврат по обращению #{{ ticket.number }} одобрен финансовым отделом.",
                "Так как тариф использовался часть месяца, мы вернули стоимость неиспользованных "
                "дней.",
                "Квитанцию о возврате мы пришлём отдельным письмом.",
                "Если через десять рабочих дней возврата нет в выписке, пришлите её снимок, и мы "
                "проверим платёж вместе с платёжной системой.",
            ),
        ),
    ),
    "delivery": _topic(
        Lines(
            "Late delivery",
            ("carrier delay", "tracking number", "lost parcel", "customs"),
            (
                "My order still has not arrived, the delivery date was three days ago.",
                "The tracking page has not updated since Monday, where is my parcel?",
                "Is my package lost? The courier says it was delivered but I have nothing.",
            ),
            (
                "We checked with the carrier: your parcel is delayed at the sorting centre and "
                "should arrive within two days.",
                "Here is how to read the tracking page: the status updates only when the parcel "
                "is scanned at the next depot.",
                "We have opened an investigation with the courier about the missing delivery.",
                "If the parcel does not arrive by the end of the week, we will send a "
                "replacement free of charge.",
                "Parcels sent abroad may be held by customs for a few days; no action is needed "
                "from you.",
            ),
        ),
        Lines(
            "Задержка доставки",
            ("задержка перевозчика", "трек-номер", "потерянная посылка", "таможня"),
            (
                "Мой заказ до сих пор не доставлен, срок доставки прошёл три дня назад.",
                "Статус отслеживания не меняется с понедельника, где моя посылка?",
                "Посылка потерялась? Курьер пишет, что доставил, но я ничего не получал.",
            ),
            (
                "Мы связались с перевозчиком: посылка задержалась на сортировочном центре и "
                "придёт в течение двух дней.",
                "Статус отслеживания обновляется, только когда посылку сканируют на следующем "
                "складе.",
                "Мы начали расследование с курьерской службой по поводу недоставленной посылки.",
                "Если посылка не придёт до конца недели, мы бесплатно отправим замену.",
                "Международные посылки иногда задерживаются на таможне на несколько дней, от "
                "вас ничего не требуется.",
            ),
        ),
    ),
    "password": _topic(
        Lines(
            "Password reset",
            ("email not received", "link expired", "locked account", "single sign-on"),
            (
                "I forgot my password and the reset email never arrives.",
                "The password reset link says it has expired, what should I do?",
                "My account is locked after too many login attempts.",
            ),
            (
                "We have sent a new password reset link; it is valid for 24 hours.",
                "Please check the spam folder: the reset email comes from no-reply at our domain.",
                "Your account was locked after several failed attempts; we have unlocked it.",
                "If your company signs in through single sign-on, the password is managed by "
                "your administrator, not by us.",
                "Use the most recent link only: requesting a new one invalidates the previous "
                "links.",
            ),
        ),
        Lines(
            "Сброс пароля",
            ("письмо не пришло", "ссылка устарела", "блокировка", "единый вход"),
            (
                "Я забыл пароль, а письмо для сброса не приходит.",
                "Ссылка для сброса пароля пишет, что устарела, что делать?",
                "Аккаунт заблокирован после нескольких попыток входа.",
            ),
            (
                "Мы отправили новую ссылку для сброса пароля, она действует 24 часа.",
                "Проверьте, пожалуйста, папку «Спам»: письмо приходит с адреса no-reply нашего "
                "домена.",
                "Аккаунт был заблокирован после нескольких неудачных попыток входа, мы его "
                "разблокировали.",
                "Если ваша компания входит через единый вход, пароль меняет ваш администратор.",
                "Используйте только последнюю ссылку: новая ссылка отменяет предыдущие.",
            ),
        ),
    ),
    "invoice": _topic(
        Lines(
            "Invoice",
            ("wrong amount", "company details", "VAT number", "copy of the invoice"),
            (
                "The invoice for last month shows the wrong amount.",
                "Please add our company name and VAT number to the invoice.",
                "Where can I download the invoices for the last year?",
            ),
            (
                "We have corrected the invoice and attached the new version to this email.",
                "Invoices are in Settings, Billing, Invoice history, where each can be "
                "downloaded as a PDF.",
                "The company name and VAT number now appear on every new invoice.",
                "The amount differs because the plan change was billed pro rata for the days "
                "left in the period.",
                "Past invoices cannot be reissued with a new address, but we can send a "
                "corrected copy.",
            ),
        ),
        Lines(
            "Счёт",
            ("неверная сумма", "реквизиты компании", "ИНН", "копия счёта"),
            (
                "В счёте за прошлый месяц неверная сумма.",
                "Добавьте, пожалуйста, в счёт название нашей компании и ИНН.",
                "Где скачать счета за последний год?",
            ),
            (
                "Мы исправили счёт и прикладываем новую версию к этому письму.",
                "Счета находятся в разделе «Настройки», «Оплата», «История счетов», каждый можно "
                "скачать в PDF.",
                "Название компании и ИНН теперь будут в каждом новом счёте.",
                "Сумма отличается, потому что смена тарифа оплачена пропорционально оставшимся "
                "дням периода.",
                "Выставленные счета изменить нельзя, но мы можем прислать исправленную копию.",
            ),
        ),
    ),
    "double-charge": _topic(
        Lines(
            "Charged twice",
            ("duplicate payment", "pending authorisation", "bank statement"),
            (
                "I was charged twice for the same subscription this month.",
                "My bank statement shows two identical payments, please fix this.",
                "Why do I see a second charge on my card after I updated the card details?",
            ),
            (
                "We found the duplicate payment and refunded the second charge.",
                "The second line on your statement is a pending authorisation; your bank will "
                "release it in a few days.",
                "Updating the card details triggers a small verification charge that is "
                "cancelled automatically.",
                "Only one payment was captured on our side; please send us the statement if "
                "you still see two.",
            ),
        ),
        Lines(
            "Двойное списание",
            ("повторный платёж", "блокировка суммы", "выписка банка"),
            (
                "С меня дважды списали оплату подписки в этом месяце.",
                "В выписке банка два одинаковых платежа, исправьте, пожалуйста.",
                "Почему после смены карты я вижу второе списание?",
            ),
            (
                "Мы нашли повторный платёж и вернули второе списание.",
                "Вторая строка в выписке — это временная блокировка суммы, банк снимет её через "
                "несколько дней.",
                "При смене карты списывается небольшая проверочная сумма, она возвращается "
                "автоматически.",
                "С нашей стороны списан только один платёж; если вы всё ещё видите два, "
                "пришлите выписку.",
            ),
        ),
    ),
    "cancel": _topic(
        Lines(
            "Cancel subscription",
            ("end of period", "keep the data", "pause instead", "auto-renewal"),
            (
                "Please cancel my subscription, we no longer need the service.",
                "How do I turn off auto-renewal before the next payment?",
                "We are closing the project, cancel our plan but keep the data for now.",
            ),
            (
                "Your subscription has been cancelled; it stays active until the end of the "
                "paid period.",
                "Auto-renewal is switched off, so no further payments will be taken.",
                "Your data is kept for 90 days after the plan ends, in case you come back.",
                "If you only need a break, you can pause the plan for up to three months instead.",
            ),
        ),
        Lines(
            "Отмена подписки",
            ("до конца периода", "сохранить данные", "пауза", "автопродление"),
            (
                "Отмените, пожалуйста, подписку, сервис нам больше не нужен.",
                "Как отключить автопродление до следующего платежа?",
                "Мы закрываем проект, отмените тариф, но пока сохраните данные.",
            ),
            (
                "Подписка отменена и действует до конца оплаченного периода.",
                "Автопродление отключено, новых списаний не будет.",
                "Данные хранятся 90 дней после окончания тарифа на случай, если вы вернётесь.",
                "Если нужен перерыв, тариф можно приостановить на срок до трёх месяцев.",
            ),
        ),
    ),
    "api": _topic(
        Lines(
            "API and integrations",
            ("rate limit", "authentication error", "webhooks", "timeouts"),
            (
                "Our integration gets 429 errors from the API since yesterday.",
                "The API returns 401 unauthorized although the key is correct.",
                "Webhooks stopped arriving at our endpoint, nothing in the logs.",
            ),
            (
                "The API allows 600 requests a minute per key; beyond that it answers 429 with "
                "a Retry-After header.",
                "A 401 means the key was revoked or belongs to another workspace; please create "
                "a new key in Settings, API.",
                "Webhook deliveries to your endpoint failed with timeouts; after ten failures "
                "we pause the webhook.",
                "You can re-enable the webhook and replay the missed events from the "
                "integration page.",
                "Our engineers have the request IDs you sent and are looking at the logs.",
            ),
        ),
        Lines(
            "API и интеграции",
            ("лимит запросов", "ошибка авторизации", "вебхуки", "таймауты"),
            (
                "Со вчерашнего дня наша интеграция получает от API ошибки 429.",
                "API возвращает 401, хотя ключ правильный.",
                "Вебхуки перестали приходить на наш адрес, в логах пусто.",
            ),
            (
                "API принимает 600 запросов в минуту на ключ, сверх этого отвечает 429 с "
                "заголовком Retry-After.",
                "Ошибка 401 означает, что ключ отозван или относится к другому пространству; "
                "создайте новый ключ в настройках API.",
                "Доставка вебхуков на ваш адрес завершалась таймаутом; после десяти ошибок мы "
                "приостанавливаем вебхук.",
                "Вебхук можно включить снова и повторить пропущенные события на странице "
                "интеграции.",
                "Наши инженеры получили идентификаторы запросов и изучают логи.",
            ),
        ),
    ),
    "export": _topic(
        Lines(
            "Data export",
            ("CSV export", "full backup", "large account"),
            (
                "How do I export all my data to CSV?",
                "The export button does nothing, I need a backup of our projects.",
                "The export file is empty, what went wrong?",
            ),
            (
                "Exports are in Settings, Data, Export: choose CSV or JSON and we email a link "
                "when the file is ready.",
                "Large accounts take up to an hour to export; the link stays valid for seven days.",
                "The empty file came from a filter left on the list; clear the filters and "
                "export again.",
                "We have started the full export for you and will send the link as soon as it "
                "is ready.",
            ),
        ),
        Lines(
            "Выгрузка данных",
            ("выгрузка в CSV", "резервная копия", "большой аккаунт"),
            (
                "Как выгрузить все мои данные в CSV?",
                "Кнопка выгрузки ничего не делает, нужна резервная копия проектов.",
                "Файл выгрузки пустой, что пошло не так?",
            ),
            (
                "Выгрузка находится в разделе «Настройки», «Данные», «Экспорт»: выберите CSV "
                "или JSON, ссылка придёт на почту.",
                "Выгрузка большого аккаунта занимает до часа, ссылка действует семь дней.",
                "Пустой файл получился из-за фильтра в списке; сбросьте фильтры и выгрузите снова.",
                "Мы запустили полную выгрузку и пришлём ссылку, как только файл будет готов.",
            ),
        ),
    ),
    "mobile-bug": _topic(
        Lines(
            "Mobile app bug",
            ("crash on start", "sync problem", "notifications"),
            (
                "The mobile app crashes as soon as I open it after the update.",
                "Changes made on the phone do not show up on the web.",
                "I no longer get push notifications on my iPhone.",
            ),
            (
                "This is a known problem in version 5.2 of the app; the fix is in 5.2.1, "
                "available in the store today.",
                "Please sign out and back in: it restarts the sync of your account.",
                "Check that notifications are allowed for the app in the phone's settings.",
                "We have passed the details to our mobile team, who reproduced the problem.",
                "Please send the app version and your phone model so we can reproduce it.",
            ),
        ),
        Lines(
            "Ошибка мобильного приложения",
            ("вылет при запуске", "синхронизация", "уведомления"),
            (
                "После обновления мобильное приложение сразу закрывается при запуске.",
                "Изменения с телефона не видны в веб-версии.",
                "Перестали приходить push-уведомления на телефон.",
            ),
            (
                "Это известная ошибка версии 5.2, исправление вышло в 5.2.1 и уже доступно в "
                "магазине приложений.",
                "Выйдите из аккаунта и войдите снова: синхронизация начнётся заново.",
                "Проверьте, что уведомления для приложения разрешены в настройках телефона.",
                "Мы передали описание мобильной команде, ошибка воспроизводится.",
                "Пришлите, пожалуйста, версию приложения и модель телефона, чтобы мы могли "
                "воспроизвести ошибку.",
            ),
        ),
    ),
    "feature": _topic(
        Lines(
            "Feature request",
            ("dark mode", "calendar view", "roadmap"),
            (
                "Are you planning to add a dark mode? My eyes hurt in the evening.",
                "It would be great to have a calendar view of the tasks.",
                "Will you support exporting reports to Excel?",
            ),
            (
                "Thank you for the idea: we have added your vote to the request on our roadmap.",
                "This feature is planned for the next quarter; we will write when it is released.",
                "We do not plan this feature right now, but we keep every request and review "
                "them each month.",
                "Meanwhile, a workaround is to use the browser's reading mode.",
            ),
        ),
        Lines(
            "Пожелание",
            ("тёмная тема", "календарь", "планы развития"),
            (
                "Планируете ли вы тёмную тему? Вечером устают глаза.",
                "Было бы удобно видеть задачи в виде календаря.",
                "Будет ли выгрузка отчётов в Excel?",
            ),
            (
                "Спасибо за идею: мы добавили ваш голос к этому пожеланию в планах развития.",
                "Эта возможность запланирована на следующий квартал, мы напишем, когда она "
                "появится.",
                "Сейчас мы не планируем эту возможность, но разбираем все пожелания каждый месяц.",
                "Пока можно воспользоваться режимом чтения в браузере.",
            ),
        ),
    ),
    "delete-account": _topic(
        Lines(
            "Account deletion",
            ("GDPR request", "confirm identity", "what is deleted"),
            (
                "Please delete my account and all my personal data.",
                "Under GDPR I ask you to erase everything you store about me.",
                "How do I close my account permanently?",
            ),
            (
                "We will delete your account and personal data within 30 days, as the GDPR "
                "requires.",
                "To protect your account, please confirm the request from the email address "
                "registered with us.",
                "Invoices are kept for the period tax law requires; everything else is erased.",
                "Once deleted, the account cannot be restored; export anything you want to keep "
                "first.",
            ),
        ),
        Lines(
            "Удаление аккаунта",
            ("запрос по закону о персональных данных", "подтверждение", "что удаляется"),
            (
                "Удалите, пожалуйста, мой аккаунт и все персональные данные.",
                "Прошу удалить все сведения обо мне, которые вы храните.",
                "Как навсегда закрыть аккаунт?",
            ),
            (
                "Мы удалим аккаунт и персональные данные в течение 30 дней.",
                "Чтобы защитить аккаунт, подтвердите запрос с адреса, указанного при регистрации.",
                "Счета хранятся столько, сколько требует налоговое законодательство, остальное "
                "удаляется.",
                "Удалённый аккаунт восстановить нельзя, поэтому заранее выгрузите нужные данные.",
            ),
        ),
    ),
    "discount": _topic(
        Lines(
            "Discount code",
            ("code not accepted", "expired promotion", "student discount"),
            (
                "The discount code from your newsletter is not accepted at checkout.",
                "I forgot to enter my promo code, can you apply it to the order?",
                "Do you have a discount for students?",
            ),
            (
                "The code is valid for annual plans only, which is why checkout declined it.",
                "We have applied the discount to your order and refunded the difference.",
                "That promotion ended last week, but here is a new code for 10 percent off.",
                "Students get 50 percent off with a university email address.",
            ),
        ),
        Lines(
            "Промокод",
            ("промокод не принят", "акция закончилась", "скидка для студентов"),
            (
                "Промокод из рассылки не принимается при оплате.",
                "Я забыл ввести промокод, можно применить его к заказу?",
                "Есть ли скидка для студентов?",
            ),
            (
                "Промокод действует только для годовых тарифов, поэтому его не приняли.",
                "Мы применили скидку к заказу и вернули разницу.",
                "Эта акция закончилась на прошлой неделе, вот новый промокод на скидку 10 %.",
                "Студентам мы даём скидку 50 % при регистрации с университетской почты.",
            ),
        ),
    ),
    "damaged": _topic(
        Lines(
            "Damaged item",
            ("photos needed", "replacement", "return label"),
            (
                "The item arrived broken, the box was crushed.",
                "The screen of the device I received is cracked.",
                "Half of the order is damaged, what are my options?",
            ),
            (
                "We are sorry the item arrived damaged; please send a photo of it and of the box.",
                "We are sending a replacement today at no cost to you.",
                "Attached is a prepaid return label for the damaged item.",
                "You can choose between a replacement and a full refund.",
            ),
        ),
        Lines(
            "Повреждённый товар",
            ("нужны фото", "замена", "возврат товара"),
            (
                "Товар пришёл сломанным, коробка была смята.",
                "У полученного устройства треснул экран.",
                "Половина заказа повреждена, что можно сделать?",
            ),
            (
                "Нам жаль, что товар пришёл повреждённым; пришлите, пожалуйста, фото товара и "
                "упаковки.",
                "Сегодня мы бесплатно отправим вам замену.",
                "Прикладываем оплаченную этикетку для возврата повреждённого товара.",
                "Вы можете выбрать замену или полный возврат денег.",
            ),
        ),
    ),
    "address": _topic(
        Lines(
            "Change of address",
            ("before dispatch", "already shipped", "billing address"),
            (
                "I entered the wrong delivery address, can you change it?",
                "We moved offices, please update the shipping address on the order.",
                "How do I change the billing address on my account?",
            ),
            (
                "The order has not been dispatched yet, so we have updated the delivery address.",
                "The parcel has already left our warehouse; the carrier can redirect it if you "
                "contact them with the tracking number.",
                "The billing address can be changed in Settings, Billing, Company details.",
            ),
        ),
        Lines(
            "Смена адреса",
            ("до отправки", "уже отправлено", "платёжный адрес"),
            (
                "Я указал неверный адрес доставки, можно его поменять?",
                "Мы переехали, обновите, пожалуйста, адрес доставки в заказе.",
                "Как изменить платёжный адрес в аккаунте?",
            ),
            (
                "Заказ ещё не отправлен, поэтому мы изменили адрес доставки.",
                "Посылка уже покинула склад; перевозчик может перенаправить её, если обратиться "
                "к нему с трек-номером.",
                "Платёжный адрес меняется в разделе «Настройки», «Оплата», «Реквизиты».",
            ),
        ),
    ),
}

OPENINGS = {
    "en": (
        "{{ greeting }}{% if customer.first_name %}, {{ customer.first_name }}{% endif %}!",
        "{{ greeting }}!",
        "Hi {{ customer.first_name|default('there') }},",
        "Dear {{ customer.name|default('customer') }},",
    ),
    "ru": (
        "{{ greeting }}{% if customer.first_name %}, {{ customer.first_name }}{% endif %}!",
        "{{ greeting }}!",
        "Здравствуйте{% if customer.name %}, {{ customer.name }}{% endif %}!",
    ),
}
THANKS = {
    "en": (
        "Thank you for contacting us.",
        "Thanks for getting in touch about ticket #{{ ticket.number }}.",
        "Thank you for your patience while we looked into this.",
        "Thanks for the details, they helped a lot.",
    ),
    "ru": (
        "Спасибо за обращение.",
        "Спасибо, что написали нам по обращению #{{ ticket.number }}.",
        "Спасибо за терпение, пока мы разбирались.",
        "Спасибо за подробности, они очень помогли.",
    ),
}
FOLLOW_UPS = {
    "en": (
        "{% if ticket.due %}We will update you by {{ ticket.due }}.{% endif %}",
        "If anything is still unclear, simply reply to this email.",
        "Your ticket number is #{{ ticket.number }}; please keep it in the subject when you reply.",
        "{% if customer.segment == 'vip' %}As a priority customer you can also call your "
        "account manager directly.{% endif %}",
    ),
    "ru": (
        "{% if ticket.due %}Мы напишем вам до {{ ticket.due }}.{% endif %}",
        "Если что-то осталось непонятным, просто ответьте на это письмо.",
        "Номер вашего обращения #{{ ticket.number }}, пожалуйста, сохраняйте его в теме письма.",
        "{% if customer.segment == 'vip' %}Как приоритетный клиент вы можете позвонить своему "
        "персональному менеджеру.{% endif %}",
    ),
}
# A help-centre paragraph some templates carry: the longer end of a library.
EXTRAS = {
    "en": (
        "While you wait, our help centre has step-by-step guides for the most common "
        "questions: billing and invoices, managing users and permissions, importing data from "
        "other tools, and connecting the integrations your team already uses. Each guide has "
        "screenshots and a short video, and most answers take less than five minutes to "
        "follow. The status page shows any incident affecting the service in real time, and "
        "you can subscribe to it to be notified by email when something changes.",
        "A few tips that solve most problems of this kind: make sure you are using the latest "
        "version of the app or a current browser, clear the browser cache if a page looks "
        "outdated, and try a private window to rule out an extension. If the problem persists, "
        "a screenshot of the page and the exact time it happened let our engineers find the "
        "request in the logs within minutes rather than hours.",
    ),
    "ru": (
        "Пока вы ждёте, в нашем справочном центре есть пошаговые инструкции по самым частым "
        "вопросам: оплата и счета, управление пользователями и правами, перенос данных из "
        "других сервисов и подключение интеграций, которыми уже пользуется ваша команда. В "
        "каждой инструкции есть снимки экрана и короткое видео. Страница статуса показывает "
        "все сбои сервиса в реальном времени, на неё можно подписаться по почте.",
        "Несколько советов, которые решают большинство подобных проблем: обновите приложение "
        "или браузер до последней версии, очистите кэш браузера, если страница выглядит "
        "устаревшей, и попробуйте открыть её в приватном окне, чтобы исключить расширения. "
        "Если проблема останется, снимок экрана и точное время помогут инженерам найти запрос "
        "в логах за минуты, а не за часы.",
    ),
}
CLOSINGS = {
    "en": (
        "Best regards,\n{{ agent.name }}\n{{ company.name }} support",
        "{% if agent.signature %}{{ agent.signature }}{% else %}{{ agent.name }}{% endif %}",
        "Kind regards,\n{{ agent.first_name }}, {{ mailbox.name }} team",
    ),
    "ru": (
        "С уважением,\n{{ agent.name }}\nслужба поддержки {{ company.name }}",
        "{% if agent.signature %}{{ agent.signature }}{% else %}{{ agent.name }}{% endif %}",
        "Всего доброго,\n{{ agent.first_name }}, команда {{ mailbox.name }}",
    ),
}
SUBJECTS = {
    "en": (
        "Re: {{ ticket.subject }} [#{{ ticket.number }}]",
        "Your request #{{ ticket.number }}",
        "Re: {{ ticket.subject }}",
    ),
    "ru": (
        "Re: {{ ticket.subject }} [#{{ ticket.number }}]",
        "Ваше обращение #{{ ticket.number }}",
        "Re: {{ ticket.subject }}",
    ),
}
SUBJECT_SHARE = 0.25
HTML_SHARE = 0.15
EXTRA_SHARE = 0.35
TEMPLATE_LANGUAGE_SHARE_RU = 0.5

MESSAGE_LANGUAGE_SHARE_RU = 0.35
MESSAGE_OPENINGS = {"en": ("Hello,", "Hi there,", "Good morning,", ""), "ru": ("Здравствуйте!",)}
MESSAGE_FILLERS = {
    "en": (
        "I have been a customer for two years and this never happened before.",
        "This is quite urgent for us, our team depends on it.",
        "Thanks in advance for your help.",
    ),
    "ru": (
        "Пользуюсь сервисом два года, такое впервые.",
        "Для нас это срочно, команда не может работать.",
        "Заранее спасибо за помощь.",
    ),
}
QUOTE_SHARE = 0.2  # messages that carry the quoted previous reply under the customer's words
NAMES = {
    "en": (
        ("Emma", "Ben", "Chloé", "Dev", "Femi", "Hana", "Jun", "Kai", "Laura", "Omar"),
        ("Smith", "García", "Müller", "Okafor", "Tanaka", "Rossi", "Novak", "Silva", "Kim"),
    ),
    "ru": (
        ("Анна", "Иван", "Мария", "Сергей", "Ольга", "Дмитрий", "Елена", "Алексей", "Татьяна"),
        ("Иванов", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Новиков"),
    ),
}
# Russia alone spans eleven zones: the greeting must follow the customer's.
ZONES = (
    "Europe/Moscow",
    "Asia/Yekaterinburg",
    "Asia/Novosibirsk",
    "Asia/Vladivostok",
    "Asia/Kamchatka",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
)
ZONE_SHARE = 0.4  # customers with a zone on record
OFFSET_SHARE = 0.6  # of the others: their mail's Date header carries the offset
OFFSETS = (180, 300, 420, 600, 720, 0, 60, -300, -480, 540)


# ------------------------------------------------------------------------------------ the seed


@dataclass
class Seeded:
    """What the measurements need to know about the seeded data."""

    token: str
    ticket_ids: list[int]
    ticket_topics: dict[int, str]
    template_ids: list[int]
    template_topics: dict[int, str]  # generated templates only
    defaults: int
    html: int
    with_subject: int
    distinct_sources: int
    customers_with_zone: int
    messages_with_offset: int
    words: tuple[int, int, int]  # min / median / max words per template body
    seconds: float


def _template_source(rng: random.Random, topic: Lines, language: str) -> str:
    paragraphs = [rng.choice(OPENINGS[language]), rng.choice(THANKS[language])]
    answers = rng.sample(topic.answers, k=rng.randint(2, min(5, len(topic.answers))))
    # One paragraph or two, as agents write them.
    cut = rng.randint(1, len(answers))
    paragraphs.append(" ".join(answers[:cut]))
    if answers[cut:]:
        paragraphs.append(" ".join(answers[cut:]))
    if rng.random() < EXTRA_SHARE:
        paragraphs.append(rng.choice(EXTRAS[language]))
    paragraphs.extend(rng.sample(FOLLOW_UPS[language], k=rng.randint(1, 2)))
    paragraphs.append(rng.choice(CLOSINGS[language]))
    return "\n\n".join(paragraphs) + "\n"


def _as_html(source: str) -> str:
    """The simple HTML of a Gmail draft: paragraphs and line breaks, one word in bold."""
    paragraphs = []
    for index, paragraph in enumerate(source.strip().split("\n\n")):
        inner = paragraph.replace("\n", "<br>")
        if index == 2 and " " in inner:
            first, rest = inner.split(" ", 1)
            inner = f"<b>{first}</b> {rest}"
        paragraphs.append(f"<p>{inner}</p>")
    return "\n".join(paragraphs) + "\n"


def generated_templates(rng: random.Random, count: int) -> list[tuple[str, TemplateCreate]]:
    """``count`` shared templates over the topics, in both languages: (topic, template)."""
    keys = list(TOPICS)
    made: list[tuple[str, TemplateCreate]] = []
    seen: Counter[tuple[str, str]] = Counter()
    for index in range(count):
        key = keys[index % len(keys)]
        language = "ru" if rng.random() < TEMPLATE_LANGUAGE_SHARE_RU else "en"
        topic = TOPICS[key][language]
        aspect = rng.choice(topic.aspects)
        seen[(topic.title, aspect)] += 1
        name = f"{topic.title}: {aspect}"
        if seen[(topic.title, aspect)] > 1:
            name += f" ({seen[(topic.title, aspect)]})"
        is_html = rng.random() < HTML_SHARE
        body = _template_source(rng, topic, language)
        made.append(
            (
                key,
                TemplateCreate(
                    name=name,
                    body=_as_html(body) if is_html else body,
                    is_html=is_html,
                    subject=(
                        rng.choice(SUBJECTS[language]) if rng.random() < SUBJECT_SHARE else None
                    ),
                    language=language,
                    folder=topic.title,
                    tags=[key, aspect.split()[0].lower()],
                    visibility=Visibility.SHARED,
                ),
            )
        )
    return made


def _message(rng: random.Random, key: str, language: str, name: str) -> tuple[str, str]:
    """A customer's message on the topic, and the subject of their mail."""
    topic = TOPICS[key][language]
    asks = rng.sample(topic.asks, k=rng.randint(1, 2))
    parts = [rng.choice(MESSAGE_OPENINGS[language]), " ".join(asks)]
    if rng.random() < 0.5:
        parts.append(rng.choice(MESSAGE_FILLERS[language]))
    parts.append(name)
    body = "\n\n".join(part for part in parts if part)
    if rng.random() < QUOTE_SHARE:
        previous = rng.choice(topic.answers).replace("{{ ticket.number }}", "1234")
        body += f"\n\nOn Mon, 3 Mar 2025 at 10:12, Support wrote:\n> {previous}\n"
    return body, asks[0][:120]


def seed(database: Database, options: Options) -> Seeded:
    """The library, the tickets and their messages, the uses, and the caller's token."""
    started = time.perf_counter()
    rng = random.Random(options.seed)
    now = datetime.now(UTC).replace(microsecond=0)

    with database.unit_of_work() as session:
        mailbox = create_mailbox(
            session, email=MAILBOX_EMAIL, name="Support", timezone="Europe/Moscow"
        )
        agent = create_agent(
            session, email=CALLER_EMAIL, name="Alex Agent", role=Role.AGENT, timezone="UTC"
        )
        lead = create_agent(
            session, email=LEAD_EMAIL, name="Лариса Лидова", role=Role.LEAD, timezone="UTC"
        )
        agent.signature = "Alex Agent\nCustomer support"
        lead.signature = "Лариса Лидова\nруководитель поддержки"
        mailbox_id, agent_id, lead_id = mailbox.id, agent.id, lead.id
        defaults, _ = seed_default_templates(session)
        token = issue_token(session, agent=session.get_one(Agent, agent_id), name="benchmark")[1]

    generated = generated_templates(rng, options.templates - defaults)
    for _, data in generated:
        # As a save through the API would: a template the sandbox refuses is a bug of this seed.
        validate_source(body=data.body, subject=data.subject, is_html=data.is_html)
    with database.unit_of_work() as session:
        lead_agent = session.get_one(Agent, lead_id)
        rows = [build_template(data, lead_agent) for _, data in generated]
        session.add_all(rows)
        session.flush()
        template_topics = {row.id: key for row, (key, _) in zip(rows, generated, strict=True)}
        template_languages = {row.id: row.language for row in rows}
    bench_seed.log(
        f"1 mailbox, 2 agents, {defaults} default + {len(generated)} generated shared "
        f"templates  [{time.perf_counter() - started:.1f} s]"
    )

    tickets = _seed_tickets(database, rng, options=options, now=now, mailbox_id=mailbox_id)
    ticket_ids = [ticket_id for ticket_id, _, _ in tickets]
    ticket_topics = {ticket_id: key for ticket_id, key, _ in tickets}
    _seed_uses(
        database,
        rng,
        options=options,
        now=now,
        tickets=tickets,
        template_topics=template_topics,
        template_languages=template_languages,
        agent_ids=(agent_id, lead_id),
    )
    bench_seed.analyze(database)

    with database.engine.connect() as conn:
        templates = conn.execute(
            select(
                ReplyTemplate.id, ReplyTemplate.body, ReplyTemplate.subject, ReplyTemplate.is_html
            )
        ).all()
        zones = conn.execute(
            select(func.count()).select_from(Customer).where(Customer.timezone.is_not(None))
        ).scalar_one()
        offsets = conn.execute(
            select(func.count()).select_from(Message).where(Message.utc_offset_minutes.is_not(None))
        ).scalar_one()
    sources = {(row.body, row.is_html) for row in templates} | {
        (row.subject, False) for row in templates if row.subject is not None
    }
    words = sorted(len(row.body.split()) for row in templates)
    return Seeded(
        token=token,
        ticket_ids=ticket_ids,
        ticket_topics=ticket_topics,
        template_ids=sorted(row.id for row in templates),
        template_topics=template_topics,
        defaults=defaults,
        html=sum(row.is_html for row in templates),
        with_subject=sum(row.subject is not None for row in templates),
        distinct_sources=len(sources),
        customers_with_zone=zones,
        messages_with_offset=offsets,
        words=(words[0], words[len(words) // 2], words[-1]),
        seconds=time.perf_counter() - started,
    )


STATUS_WEIGHTS: dict[Status, float] = {
    Status.NEW: 0.20,
    Status.OPEN: 0.35,
    Status.PENDING: 0.15,
    Status.RESOLVED: 0.20,
    Status.CLOSED: 0.10,
}


def _seed_tickets(
    database: Database, rng: random.Random, *, options: Options, now: datetime, mailbox_id: int
) -> list[tuple[int, str, str]]:
    """One customer, ticket and inbound message per ticket: (ticket id, topic, message text).

    The customer's zone: on record for ZONE_SHARE of them; else, mostly, the UTC offset of their
    mail's Date header (the greeting's second source); else the mailbox's.
    """
    started = time.perf_counter()
    plans = []
    for index in range(options.tickets):
        language = "ru" if rng.random() < MESSAGE_LANGUAGE_SHARE_RU else "en"
        firsts, lasts = NAMES[language]
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        key = rng.choice(list(TOPICS))
        body, subject = _message(rng, key, language, name.split()[0])
        zone = rng.choice(ZONES) if rng.random() < ZONE_SHARE else None
        offset = None if zone or rng.random() >= OFFSET_SHARE else rng.choice(OFFSETS)
        created = now - timedelta(minutes=rng.randrange(10, 30 * 24 * 60))
        plans.append((index, language, name, key, body, subject, zone, offset, created))

    with database.engine.begin() as conn:
        conn.execute(
            insert(Customer),
            [
                {
                    "email": f"customer{index:04d}@example.com",
                    "name": name,
                    "segment": "vip" if rng.random() < 0.1 else "regular",
                    "timezone": zone,
                    "created_at": created,
                    "updated_at": created,
                }
                for index, _, name, _, _, _, zone, _, created in plans
            ],
        )
        customer_ids = list(conn.execute(select(Customer.id).order_by(Customer.id)).scalars())
        statuses = rng.choices(
            list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()), k=len(plans)
        )
        rows = []
        for (index, _, _, _, _, subject, _, _, created), customer_id, status in zip(
            plans, customer_ids, statuses, strict=True
        ):
            answered = status is not Status.NEW
            done = status in (Status.RESOLVED, Status.CLOSED)
            rows.append(
                {
                    "number": bench_seed.FIRST_NUMBER + index,
                    "mailbox_id": mailbox_id,
                    "customer_id": customer_id,
                    "subject": subject,
                    "status": status,
                    "priority": rng.choice(list(Priority)),
                    "assignee_id": None,
                    "team_id": None,
                    "sla_policy_id": None,
                    "first_response_due_at": created + timedelta(hours=8),
                    "resolution_due_at": None if done else created + timedelta(days=3),
                    "first_response_at": created + timedelta(hours=2) if answered else None,
                    "resolved_at": created + timedelta(days=1) if done else None,
                    "closed_at": created + timedelta(days=2) if status is Status.CLOSED else None,
                    "previous_ticket_id": None,
                    "version": 1,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        conn.execute(insert(Ticket), rows)
        ticket_ids = list(conn.execute(select(Ticket.id).order_by(Ticket.number)).scalars())
        conn.execute(
            insert(Message),
            [
                {
                    "mailbox_id": mailbox_id,
                    "ticket_id": ticket_id,
                    "gmail_message_id": f"bench-{index:06d}",
                    "gmail_thread_id": f"bench-thread-{index:06d}",
                    "rfc822_message_id": f"<bench-{index:06d}@example.com>",
                    "direction": Direction.INBOUND,
                    "from_address": f"customer{index:04d}@example.com",
                    "from_name": name,
                    "to_addresses": [MAILBOX_EMAIL],
                    "cc_addresses": [],
                    "subject": subject,
                    "date": created,
                    "snippet": body[:200],
                    "text_body": body,
                    "utc_offset_minutes": offset,
                    "label_ids": ["INBOX"],
                    "attachments": [],
                    "is_automated": False,
                    "automated_reasons": [],
                    "created_at": created,
                }
                for (index, _, name, _, body, subject, _, offset, created), ticket_id in zip(
                    plans, ticket_ids, strict=True
                )
            ],
        )
        conn.execute(
            update(TicketCounter)
            .where(TicketCounter.name == "ticket")
            .values(value=select(func.max(Ticket.number)).scalar_subquery())
        )
    bench_seed.log(
        f"{len(ticket_ids)} customers, tickets and inbound messages"
        f"  [{time.perf_counter() - started:.1f} s]"
    )
    return [
        (ticket_id, plan[3], plan[4]) for plan, ticket_id in zip(plans, ticket_ids, strict=True)
    ]


def _seed_uses(
    database: Database,
    rng: random.Random,
    *,
    options: Options,
    now: datetime,
    tickets: list[tuple[int, str, str]],
    template_topics: dict[int, str],
    template_languages: dict[int, str],
    agent_ids: tuple[int, ...],
) -> int:
    """Uses as agents make them: mostly a template on the message's topic and language, now and
    then another one; each template's usage count and last use to match."""
    by_topic: dict[tuple[str, str], list[int]] = {}
    for template_id, key in template_topics.items():
        by_topic.setdefault((key, template_languages[template_id]), []).append(template_id)
    everything = list(template_topics)
    rows = []
    for _ in range(options.uses):
        ticket_id, key, message = rng.choice(tickets)
        language = "ru" if any("а" <= ch <= "я" for ch in message.lower()) else "en"
        fitting = by_topic.get((key, language))
        # A few templates of each topic are the favourites, as in any team.
        template_id = (
            rng.choice(fitting[:3]) if fitting and rng.random() < 0.85 else rng.choice(everything)
        )
        rows.append(
            {
                "template_id": template_id,
                "ticket_id": ticket_id,
                "agent_id": rng.choice(agent_ids),
                "message_excerpt": message[:2000],
                "used_at": now - timedelta(minutes=rng.randrange(1, 60 * 24 * 60)),
            }
        )
    with database.engine.begin() as conn:
        conn.execute(insert(TemplateUse), rows)
        counts = Counter(row["template_id"] for row in rows)
        last: dict[int, datetime] = {}
        for row in rows:
            last[row["template_id"]] = max(
                row["used_at"], last.get(row["template_id"], row["used_at"])
            )
        for template_id, count in counts.items():
            conn.execute(
                update(ReplyTemplate.__table__)
                .where(ReplyTemplate.__table__.c.id == template_id)
                .values(usage_count=count, last_used_at=last[template_id])
            )
    bench_seed.log(f"{len(rows)} template uses on {len(counts)} templates")
    return len(rows)


@contextmanager
def _postgres_database(server_url: str) -> Iterator[str]:
    """A scratch database of its own: the templates are measured on their own data."""
    with scratch_postgres_database(server_url, PG_DATABASE) as url:
        yield url


# ------------------------------------------------------------------------------------- measure


@dataclass
class Series:
    """One measurement on one database, in milliseconds."""

    database: str
    name: str
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)


@dataclass
class DatabaseRun:
    database: str
    seeded: Seeded
    series: dict[str, Series] = field(default_factory=dict)
    render_warnings: Counter[str] = field(default_factory=Counter)
    renders_with_warnings: int = 0
    renders_checked: int = 0
    suggestions_checked: int = 0
    suggestions_on_topic: int = 0
    suggestions_empty: int = 0


def _send(
    client: httpx.Client, method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, float, float]:
    """One request: the response, the server's time and the client's round trip (ms)."""
    started = time.perf_counter()
    response = client.request(method, path, **kwargs)
    client_ms = (time.perf_counter() - started) * 1000
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
    match = SERVER_TIMING.search(response.headers.get("server-timing", ""))
    if match is None:
        raise RuntimeError(f"{method} {path}: no `server-timing: app;dur=` header")
    return response, float(match.group(1)), client_ms


def _render(
    client: httpx.Client, run: DatabaseRun, template_id: int, ticket_id: int
) -> tuple[float, float]:
    response, server_ms, client_ms = _send(
        client, "POST", f"/api/v1/templates/{template_id}/render", json={"ticket_id": ticket_id}
    )
    rendered = response.json()
    run.renders_checked += 1
    if not rendered["body"].strip():
        raise RuntimeError(f"template {template_id} rendered empty for ticket {ticket_id}")
    if rendered["warnings"]:
        run.renders_with_warnings += 1
        run.render_warnings.update(rendered["warnings"])
    return server_ms, client_ms


def _suggest(client: httpx.Client, run: DatabaseRun, ticket_id: int) -> tuple[float, float]:
    response, server_ms, client_ms = _send(
        client,
        "GET",
        f"/api/v1/tickets/{ticket_id}/template-suggestions",
        params={"limit": SUGGEST_LIMIT},
    )
    items = response.json()["items"]
    run.suggestions_checked += 1
    if not items:
        run.suggestions_empty += 1
    topic = run.seeded.ticket_topics[ticket_id]
    if any(run.seeded.template_topics.get(item["template"]["id"]) == topic for item in items):
        run.suggestions_on_topic += 1
    return server_ms, client_ms


def _record(series: Series, timing: tuple[float, float]) -> None:
    series.server_ms.append(timing[0])
    series.client_ms.append(timing[1])


def measure(base_url: str, run: DatabaseRun, options: Options, out: TextIO) -> None:
    """Every measurement on one served database, in the order the module docstring gives."""
    rng = random.Random(options.seed + 1)
    seeded = run.seeded
    names = {
        "floor": "floor: GET /agents/me (auth only)",
        "compile": "render, first of each template",
        "render": "render",
        "cold": "suggestions, cold first call",
        "suggest": "suggestions",
        "rebuilt": "suggestions after a recorded use",
    }
    series = {key: Series(run.database, name) for key, name in names.items()}
    run.series = series
    headers = {"Authorization": f"Bearer {seeded.token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        # What every authenticated request costs (token check, unit of work, serialisation):
        # the floor under the render's figure. It also warms the connection, no template yet.
        out.write(f"  floor: {options.warmup} warm-up + {options.requests} timed GET /agents/me\n")
        out.flush()
        for index in range(options.warmup + options.requests):
            _, server_ms, client_ms = _send(client, "GET", "/api/v1/agents/me")
            if index >= options.warmup:
                _record(series["floor"], (server_ms, client_ms))

        order = list(seeded.template_ids)
        rng.shuffle(order)
        out.write(f"  render: the first render of each of the {len(order)} templates ...\n")
        out.flush()
        for template_id in order:
            _record(
                series["compile"], _render(client, run, template_id, rng.choice(seeded.ticket_ids))
            )

        out.write(
            f"  render: {options.warmup} warm-up + {options.requests} timed "
            "(random template, random ticket) ...\n"
        )
        out.flush()
        for index in range(options.warmup + options.requests):
            timing = _render(
                client, run, rng.choice(seeded.template_ids), rng.choice(seeded.ticket_ids)
            )
            if index >= options.warmup:
                _record(series["render"], timing)

        out.write(
            f"  suggestions: the cold first call, then {options.warmup} warm-up + "
            f"{options.requests} timed (random ticket, limit={SUGGEST_LIMIT}) ...\n"
        )
        out.flush()
        _record(series["cold"], _suggest(client, run, rng.choice(seeded.ticket_ids)))
        for index in range(options.warmup + options.requests):
            timing = _suggest(client, run, rng.choice(seeded.ticket_ids))
            if index >= options.warmup:
                _record(series["suggest"], timing)

        out.write(
            f"  suggestions: {options.rebuilds} x (POST a use, then suggest for another "
            "ticket) ...\n"
        )
        out.flush()
        for _ in range(options.rebuilds):
            used = rng.choice(seeded.ticket_ids)
            template_id = rng.choice(seeded.template_ids)
            _send(client, "POST", f"/api/v1/templates/{template_id}/uses", json={"ticket_id": used})
            _record(series["rebuilt"], _suggest(client, run, rng.choice(seeded.ticket_ids)))


# --------------------------------------------------------------------------------------- print


def print_seed(seeded: Seeded, out: TextIO) -> None:
    low, median, high = seeded.words
    out.write(
        f"  {len(seeded.template_ids)} shared templates ({seeded.defaults} default, "
        f"{len(seeded.template_ids) - seeded.defaults} generated; {seeded.html} HTML, "
        f"{seeded.with_subject} with a subject; body {low}/{median}/{high} words min/median/max)"
        f"\n  {seeded.distinct_sources} distinct sources to compile (bodies + subjects); the "
        f"sandbox's compile cache holds {_compile_cache_size()}\n"
        f"  {len(seeded.ticket_ids)} tickets: {seeded.customers_with_zone} customers with a zone "
        f"on record, {seeded.messages_with_offset} more with only their mail's UTC offset"
        f"  [{seeded.seconds:.1f} s]\n"
    )
    out.flush()


def _compile_cache_size() -> str:
    info = getattr(sandbox._compile_cached, "cache_info", None)
    size = info().maxsize if info is not None else None
    return f"{size} (LRU)" if size else "an unknown number"


def print_table(runs: list[DatabaseRun], out: TextIO) -> None:
    """One row per measurement: p50/p95/p99/max at the server and at the client."""
    header = (
        f"{'database':<10} {'measurement':<34} {'n':>4} | "
        f"{'server p50':>10} {'p95':>6} {'p99':>6} {'max':>7} | "
        f"{'client p50':>10} {'p95':>6} {'p99':>6} {'max':>7}"
    )
    out.write(header + "\n" + "-" * len(header) + "\n")
    for run in runs:
        for series in run.series.values():
            server, client = series.server_ms, series.client_ms
            out.write(
                f"{series.database:<10} {series.name:<34.34} {len(server):>4} | "
                f"{percentile(server, 50):>10.2f} {percentile(server, 95):>6.2f} "
                f"{percentile(server, 99):>6.2f} {max(server):>7.2f} | "
                f"{percentile(client, 50):>10.2f} {percentile(client, 95):>6.2f} "
                f"{percentile(client, 99):>6.2f} {max(client):>7.2f}\n"
            )
    out.write(
        "(times in ms; the targets: p95 of the in-process render row and of the suggestions row"
        " at the server;\n the HTTP render row adds what every authenticated request costs, the"
        " floor row)\n"
    )
    for run in runs:
        warned = ", ".join(f"{text!r} x{n}" for text, n in run.render_warnings.most_common(3))
        on_topic = 100 * run.suggestions_on_topic / max(run.suggestions_checked, 1)
        out.write(
            f"{run.database}: {run.renders_with_warnings} of {run.renders_checked} renders with "
            f"warnings{f' ({warned})' if warned else ''}; a template on the message's topic in "
            f"the top {SUGGEST_LIMIT} for {on_topic:.0f} % of {run.suggestions_checked} "
            f"suggestion lists, {run.suggestions_empty} empty\n"
        )
        floor = percentile(run.series["floor"].server_ms, 50)
        out.write(
            f"{run.database}: above the floor (server p50 minus the floor's p50): render "
            f"+{percentile(run.series['render'].server_ms, 50) - floor:.2f} ms, suggestions "
            f"+{percentile(run.series['suggest'].server_ms, 50) - floor:.2f} ms\n"
        )
    out.flush()


# ----------------------------------------------------------------------------------------- all


def measure_in_process(database: Database, run: DatabaseRun, options: Options, out: TextIO) -> None:
    """The render itself, as the sidebar's compose card and the acknowledgement call it: the
    service in this process (template, ticket, customer and mailbox read from the database,
    context built, sandbox render) in an open transaction, without HTTP, the token check and the
    transaction's begin and end that every request pays (the "floor" row)."""
    rng = random.Random(options.seed + 2)
    seeded = run.seeded
    render_series = Series(run.database, "render, in process (service)")
    run.series = {"render_service": render_series, **run.series}
    out.write(
        f"  render in process: {options.warmup} warm-up + {options.requests} timed "
        "(random template, random ticket) ...\n"
    )
    out.flush()
    with database.session() as session:
        agent = session.execute(select(Agent).where(Agent.role == Role.AGENT)).scalars().first()
        if agent is None:
            raise RuntimeError("the seed has no agent")
        session.expunge(agent)
    for index in range(options.warmup + options.requests):
        template_id = rng.choice(seeded.template_ids)
        ticket_id = rng.choice(seeded.ticket_ids)
        with database.session() as session:
            # The transaction is open before the clock starts, as in a request (after the token
            # check) or in the sync's transaction that writes an acknowledgement.
            session.connection()
            started = time.perf_counter()
            rendered = template_service.render_saved(
                session, template_id=template_id, ticket_id=ticket_id, agent=agent
            )
            elapsed = (time.perf_counter() - started) * 1000
        if not rendered.body.strip():
            raise RuntimeError(f"template {template_id} rendered empty for ticket {ticket_id}")
        if index >= options.warmup:
            _record(render_series, (elapsed, elapsed))


def run_database(url: str, database_name: str, options: Options, out: TextIO) -> DatabaseRun:
    """Schema, seed, serve, measure one database."""
    migrations.upgrade(url=url)
    database = Database.from_url(url)
    try:
        seeded = seed(database, options)
        run = DatabaseRun(database_name, seeded)
        print_seed(seeded, out)
        measure_in_process(database, run, options, out)
    finally:
        database.dispose()
    with running_server(url) as base_url:
        out.write(f"  serving at {base_url}\n")
        out.flush()
        measured = run.series
        measure(base_url, run, options, out)
        run.series = {**measured, **run.series}
    return run


def run(postgres_url: str | None, options: Options, out: TextIO) -> list[Verdict]:
    """Measure PostgreSQL (if given) and SQLite, print the table, return the verdicts."""
    runs: list[DatabaseRun] = []
    if postgres_url:
        out.write("\n[templates 1/2] PostgreSQL (a scratch database on the same server)\n")
        out.flush()
        with _postgres_database(postgres_url) as pg_url:
            runs.append(run_database(pg_url, "PostgreSQL", options, out))
    else:
        out.write(
            "\n[templates 1/2] PostgreSQL: skipped (no PostgreSQL URL; `make bench` gives one)\n"
        )
    out.write("\n[templates 2/2] SQLite (a temp file)\n")
    out.flush()
    with tempfile.TemporaryDirectory(prefix="inboxdesk-templates-bench-") as tmp:
        runs.append(run_database(f"sqlite:///{Path(tmp) / 'templates.db'}", "SQLite", options, out))

    out.write("\n")
    print_table(runs, out)
    return verdicts(runs)


def verdicts(runs: list[DatabaseRun]) -> list[Verdict]:
    """The targets on PostgreSQL, with SQLite's figure beside them."""
    by_name = {run.database: run for run in runs}
    result = []
    for key, what, budget in (
        ("render_service", "template render", RENDER_BUDGET_MS),
        ("suggest", "template suggestions", SUGGEST_BUDGET_MS),
    ):
        sqlite = by_name.get("SQLite")
        beside = f"; SQLite {percentile(sqlite.series[key].server_ms, 95):.2f} ms" if sqlite else ""
        postgres = by_name.get("PostgreSQL")
        if postgres is None:
            result.append(
                Verdict(f"{what} PostgreSQL", None, f"not measured (no PostgreSQL){beside}")
            )
            continue
        series = postgres.series[key]
        p95 = percentile(series.server_ms, 95)
        passed = p95 <= budget
        result.append(
            Verdict(
                f"{what} PostgreSQL",
                passed,
                f"p95 server time {p95:.2f} ms {'<=' if passed else '>'} {budget:g} ms "
                f"({len(series.server_ms)} {'renders' if key == 'render_service' else 'requests'}"
                " over "
                f"{len(postgres.seeded.template_ids)} templates{beside})",
            )
        )
    return result

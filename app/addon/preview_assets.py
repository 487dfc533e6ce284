"""The preview page's style sheet and script, inlined into the page (no build step, no CDN).

The script plays Gmail's part for the add-on: it builds Google's event object (``commonEventObject``
with ``parameters`` and ``formInputs`` read from the drawn widgets, ``gmail`` with the open thread
or draft), posts it through ``/preview/api/<endpoint path>`` (the server adds the signed tokens),
and applies the render action that comes back: ``pushCard`` / ``updateCard`` / ``popCard`` on the
sidebar's card stack, ``notification`` as a toast, ``link`` (a Gmail thread opens here), and
``updateDraftActionMarkup`` on the preview draft.
"""

from __future__ import annotations

CSS = r"""
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 "DejaVu Sans", Roboto, Arial, sans-serif; color: #202124;
  background: #f6f8fc; height: 100vh; display: flex; flex-direction: column; }
.topbar { display: flex; gap: 16px; align-items: center; padding: 8px 16px; background: #fff;
  border-bottom: 1px solid #dadce0; }
.topbar .brand { font-weight: bold; color: #1a73e8; margin-right: auto; }
.topbar label { font-size: 13px; color: #5f6368; }
.topbar select { margin-left: 4px; }
.layout { flex: 1; display: grid; grid-template-columns: 330px 1fr 360px; min-height: 0; }
.threads { overflow-y: auto; background: #fff; border-right: 1px solid #dadce0; }
.threads .notice { padding: 12px; color: #5f6368; }
.thread-row { display: block; padding: 8px 12px; border-bottom: 1px solid #f1f3f4;
  color: inherit; text-decoration: none; }
.thread-row:hover { background: #f2f6fc; }
.thread-row.selected { background: #d3e3fd; }
.thread-row.unread .sender, .thread-row.unread .subject { font-weight: bold; }
.thread-row .line { display: flex; gap: 6px; }
.thread-row .sender { flex: 1; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.thread-row .date, .thread-row .count { color: #5f6368; font-size: 12px; }
.thread-row .subject, .thread-row .snippet { white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.thread-row .snippet { color: #5f6368; font-size: 12px; }
.label { display: inline-block; font-size: 11px; padding: 0 6px; margin: 2px 4px 0 0;
  border-radius: 4px; background: #e8eaed; color: #3c4043; }
.reading { overflow-y: auto; padding: 16px 24px; }
.reading .empty { color: #5f6368; margin-top: 48px; text-align: center; }
.thread-subject { font-size: 20px; font-weight: normal; margin: 0 0 12px; }
.message { background: #fff; border: 1px solid #dadce0; border-radius: 8px; padding: 12px 16px;
  margin-bottom: 12px; }
.message .meta { color: #5f6368; font-size: 12px; margin-bottom: 8px; }
.message .meta b { color: #202124; font-size: 14px; }
.message .body { white-space: pre-wrap; word-wrap: break-word; }
.reply-bar { margin: 8px 0 16px; display: flex; gap: 8px; }
.draft { background: #fff; border: 1px solid #1a73e8; border-radius: 8px; padding: 12px 16px; }
.draft .row { display: flex; gap: 8px; align-items: center; margin-bottom: 6px; color: #5f6368; }
.draft .row input { flex: 1; }
.draft textarea { width: 100%; min-height: 220px; font: inherit; }
.draft .hint { font-size: 12px; color: #5f6368; }
.sidebar { display: flex; flex-direction: column; background: #fff;
  border-left: 1px solid #dadce0; min-height: 0; }
.sidebar-bar { display: flex; align-items: center; gap: 8px; padding: 8px 12px;
  border-bottom: 1px solid #dadce0; }
.sidebar-bar .title { font-weight: bold; flex: 1; }
.sidebar-bar .trigger { font-size: 11px; color: #5f6368; }
.icon-btn { border: none; background: none; cursor: pointer; font-size: 16px; }
#card-host { flex: 1; overflow-y: auto; position: relative; }
#card-host.busy::after { content: "Loading…"; position: absolute; inset: 0;
  background: rgba(255,255,255,.7); display: flex; align-items: center; justify-content: center;
  color: #1a73e8; }
.card-header { display: flex; gap: 10px; align-items: center; padding: 12px 16px 4px; }
.card-title { font-size: 16px; font-weight: bold; }
.card-subtitle { color: #5f6368; font-size: 12px; }
.header-image { width: 32px; height: 32px; background: #e8eaed; }
.header-image.circle { border-radius: 50%; }
.card-actions { float: right; margin: 8px 12px; position: relative; }
.card-actions summary { list-style: none; cursor: pointer; font-size: 18px; }
.card-actions .menu-item { display: block; width: 100%; text-align: left; }
.section { padding: 8px 16px; }
.section-header { font-size: 12px; font-weight: bold; color: #5f6368; margin-bottom: 4px;
  text-transform: uppercase; letter-spacing: .03em; }
hr.section-divider, hr.divider { border: none; border-top: 1px solid #e8eaed; margin: 4px 0; }
.widget { margin: 6px 0; }
.decorated-text { display: flex; gap: 8px; align-items: center; }
.decorated-text.clickable { cursor: pointer; border-radius: 6px; padding: 2px 4px;
  margin-left: -4px; }
.decorated-text.clickable:hover { background: #f1f3f4; }
.decorated-body { flex: 1; min-width: 0; }
.decorated-body:not(.wrap) .text { white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.top-label, .bottom-label, .hint { font-size: 12px; color: #5f6368; }
.icon { width: 20px; text-align: center; }
.button-list, .chip-list { display: flex; flex-wrap: wrap; gap: 6px; }
.btn, .chip, .menu-item { border: 1px solid #dadce0; background: #fff; color: #1a73e8;
  border-radius: 16px; padding: 5px 12px; cursor: pointer; font: inherit; font-size: 13px; }
.btn.filled { background: #1a73e8; color: #fff; border-color: transparent; }
.btn.borderless { border-color: transparent; }
.btn:disabled, .chip:disabled { color: #9aa0a6; cursor: default; }
.input-label { display: block; font-size: 12px; color: #5f6368; }
.selection-input select, .text-input input, .text-input textarea,
.date-time-picker input { width: 100%; font: inherit; padding: 4px; }
.choice { display: block; }
.columns { display: flex; gap: 12px; }
.column { flex: 1; min-width: 0; }
.fixed-footer { position: sticky; bottom: 0; background: #fff; border-top: 1px solid #e8eaed;
  padding: 8px 16px; display: flex; gap: 8px; flex-direction: row-reverse; }
.unsupported, .placeholder { color: #b3261e; font-size: 12px; }
.sidebar-error { margin: 16px; padding: 12px; border: 1px solid #f2b8b5; background: #fce8e6;
  border-radius: 8px; white-space: pre-wrap; font-size: 12px; }
.overflow-menu { position: absolute; z-index: 5; background: #fff; border: 1px solid #dadce0;
  border-radius: 8px; box-shadow: 0 2px 6px rgba(0,0,0,.2); padding: 4px; }
#debug { border-top: 1px solid #dadce0; font-size: 12px; max-height: 40%; overflow: auto; }
#debug summary { padding: 6px 12px; cursor: pointer; color: #5f6368; }
#debug pre { margin: 0 12px 8px; white-space: pre-wrap; word-break: break-all; }
#toast { position: fixed; left: 50%; bottom: 24px; transform: translateX(-50%);
  background: #323232; color: #fff; padding: 10px 18px; border-radius: 6px; max-width: 60%; }
"""

JS = r"""
(() => {
  "use strict";
  const state = JSON.parse(document.getElementById("preview-state").textContent);
  const host = document.getElementById("card-host");
  const agentSelect = document.getElementById("agent");
  const draft = document.getElementById("draft");
  const draftBody = document.getElementById("draft-body");
  const draftSubject = document.getElementById("draft-subject");
  const backButton = document.getElementById("back");
  const toastBox = document.getElementById("toast");
  const stack = [];  // the sidebar's card stack: HTML fragments, the top one is shown
  let composing = false;
  let toastTimer = null;
  let pending = 0;

  // --- the page's own navigation ----------------------------------------------------------
  function pageUrl(changes) {
    const url = new URL(location.href);
    for (const [key, value] of Object.entries(changes)) {
      if (value === null || value === undefined || value === "") url.searchParams.delete(key);
      else url.searchParams.set(key, value);
    }
    return url.pathname + url.search;
  }
  function openThread(threadId) {
    location.assign(pageUrl({thread: threadId, mailbox: null, agent: state.agent}));
  }
  // Gmail's thread links, as the cards give them: https://mail.google.com/mail/u/0/#all/<id>
  const GMAIL_THREAD = /^https:\/\/mail\.google\.com\/mail\/u\/\d+\/#[^/]+\/([A-Za-z0-9_-]+)$/;
  function openLink(url) {
    const match = GMAIL_THREAD.exec(url || "");
    if (match) { openThread(match[1]); return; }
    if (/^https?:/.test(url || "")) window.open(url, "_blank", "noopener");
  }

  // --- the event object --------------------------------------------------------------------
  function baseEvent() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const event = {
      commonEventObject: {
        hostApp: "GMAIL",
        platform: "WEB",
        userLocale: navigator.language || "en",
        timeZone: {id: zone, offset: -new Date().getTimezoneOffset() * 60000},
      },
    };
    if (state.thread) {
      event.gmail = {threadId: state.thread.id, messageId: state.thread.messageId};
    }
    if (composing) {
      event.gmail = Object.assign(event.gmail || {}, {
        toRecipients: state.thread && state.thread.replyTo ? [state.thread.replyTo] : [],
        subject: draftSubject ? draftSubject.value : "",
      });
    }
    return event;
  }
  function formInputs(root) {
    const inputs = {};
    root.querySelectorAll("[data-form-input]").forEach((el) => {
      if (!el.name) return;
      const kind = el.dataset.formInput;
      if ((kind === "checkbox" || kind === "radio" || kind === "switch") && !el.checked) return;
      if (el.value === "") return;
      const entry = inputs[el.name] || (inputs[el.name] = {stringInputs: {value: []}});
      entry.stringInputs.value.push(el.value);
    });
    return inputs;
  }
  function endpointPath(fn) {
    // HTTP runtime: an action's function is the URL of the endpoint to call.
    if (/^https?:\/\//.test(fn) || fn.startsWith("/")) return new URL(fn, location.origin).pathname;
    return "/addon/action/" + fn;
  }

  // --- talking to the add-on -----------------------------------------------------------------
  async function post(path, event) {
    pending += 1;
    host.classList.add("busy");
    try {
      const response = await fetch("/preview/api" + path, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({agent: state.agent, event: event}),
      });
      const data = await response.json();
      if (!response.ok) {
        const message = data.error ? data.error.message : response.statusText;
        return {status: response.status, body: {error: {message: message}}, rendered: []};
      }
      return data;
    } catch (err) {
      return {status: 0, body: {error: {message: String(err)}}, rendered: []};
    } finally {
      pending -= 1;
      if (!pending) host.classList.remove("busy");
    }
  }
  function trigger() {
    if (composing) return "compose";
    return state.thread ? "contextual" : "homepage";
  }
  async function runTrigger() {
    const name = trigger();
    document.getElementById("trigger-name").textContent = name;
    const data = await post("/addon/" + name, baseEvent());
    stack.length = 0;
    apply(data);
    host.scrollTop = 0;
  }
  async function runAction(action, root) {
    if (!action || !action.function) return;
    const inputs = formInputs(root || host);
    const missing = (action.requiredWidgets || []).filter((name) => !inputs[name]);
    if (missing.length) { toast("Fill in: " + missing.join(", ")); return; }
    const event = baseEvent();
    const parameters = {};
    for (const p of action.parameters || []) parameters[p.key] = p.value;
    event.commonEventObject.parameters = parameters;
    event.commonEventObject.formInputs = inputs;
    event.commonEventObject.invokedFunction = action.function;
    apply(await post(endpointPath(action.function), event), {keepCardOnError: true});
  }

  // --- applying render actions ---------------------------------------------------------------
  function apply(data, options) {
    document.getElementById("debug-sent").textContent = JSON.stringify(data.sent || {}, null, 2);
    document.getElementById("debug-received").textContent =
      (data.timing ? "server-timing: " + data.timing + "\n" : "") +
      JSON.stringify(data.body, null, 2);
    const body = data.body || {};
    if (data.status < 200 || data.status >= 300) {
      const text = "The add-on answered " + data.status + ": " +
        (body.error ? body.error.message : JSON.stringify(body));
      // A failed action leaves the card as it was (Gmail shows an error bar); a failed
      // trigger has no card to show.
      if (options && options.keepCardOnError && stack.length) toast(text); else showError(text);
      return;
    }
    const render = body.renderActions || body;
    const action = render.action || {};
    (action.navigations || []).forEach((step, i) => {
      const html = (data.rendered || [])[i];
      if (step.pushCard) { stack.push(html); host.scrollTop = 0; }
      else if (step.updateCard) {
        if (stack.length) stack[stack.length - 1] = html; else stack.push(html);
      } else if (step.popCard) { if (stack.length > 1) stack.pop(); }
      else if (step.popToRoot) stack.length = Math.min(stack.length, 1);
      else if (step.popToCard) popToCard(step.popToCard);
    });
    showTop();
    if (action.notification && action.notification.text) toast(action.notification.text);
    if (action.link && action.link.url) openLink(action.link.url);
    const gmail = render.hostAppAction && render.hostAppAction.gmailAction;
    if (gmail) applyGmailAction(gmail);
  }
  function popToCard(name) {
    for (let i = stack.length - 1; i >= 0; i--) {
      if (stack[i] && stack[i].includes('data-card-name="' + name + '"')) {
        stack.length = i + 1;
        return;
      }
    }
  }
  function showTop() {
    const top = stack[stack.length - 1];
    host.innerHTML = top || "";
    backButton.hidden = stack.length < 2;
  }
  function showError(text) {
    host.innerHTML = "";
    const box = document.createElement("div");
    box.className = "sidebar-error";
    box.textContent = text;
    host.appendChild(box);
  }
  function toast(text) {
    toastBox.textContent = text;
    toastBox.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toastBox.hidden = true; }, 6000);
  }

  // --- the preview draft ---------------------------------------------------------------------
  function htmlToText(markup) {
    const doc = new DOMParser().parseFromString(markup, "text/html");
    doc.querySelectorAll("br").forEach((br) => br.replaceWith("\n"));
    doc.querySelectorAll("p, div, li, tr").forEach((el) => el.append("\n"));
    return doc.body.textContent.replace(/\n{3,}/g, "\n\n");
  }
  function applyGmailAction(gmail) {
    const update = gmail.updateDraftActionMarkup;
    if (!update) return;
    if (!draft) { toast("No draft is open to insert into"); return; }
    if (!composing) openDraft(false);
    if (update.updateSubject && draftSubject) draftSubject.value = update.updateSubject.subject;
    const body = update.updateBody;
    if (!body) return;
    const text = (body.insertContents || []).map((c) =>
      c.contentType === "TEXT" ? c.content : htmlToText(c.content || "")).join("");
    const value = draftBody.value;
    if (body.type === "INSERT_AT_START") draftBody.value = text + value;
    else if (body.type === "INSERT_AT_END") draftBody.value = value + text;
    else {
      const start = draftBody.selectionStart, end = draftBody.selectionEnd;
      draftBody.value = value.slice(0, start) + text + value.slice(end);
      draftBody.selectionStart = draftBody.selectionEnd = start + text.length;
    }
    draftBody.dispatchEvent(new Event("input"));
  }
  function openDraft(runCompose) {
    if (!draft) return;
    draft.hidden = false;
    composing = true;
    draftBody.focus();
    if (runCompose) runTrigger();
  }
  function closeDraft() {
    draft.hidden = true;
    draftBody.value = "";
    composing = false;
    runTrigger();
  }

  // --- wiring --------------------------------------------------------------------------------
  host.addEventListener("click", (ev) => {
    const el = ev.target.closest("[data-onclick]");
    if (!el || el.disabled || !host.contains(el)) return;
    ev.preventDefault();
    const click = JSON.parse(el.dataset.onclick);
    const card = el.closest(".card") || host;
    if (click.action) runAction(click.action, card);
    else if (click.openLink) openLink(click.openLink.url);
    else if (click.cardTemplate) {
      const template = document.getElementById(click.cardTemplate);
      if (template) { stack.push(template.innerHTML); showTop(); host.scrollTop = 0; }
    } else if (click.overflowMenu) showOverflow(el, click.overflowMenu);
  });
  host.addEventListener("click", (ev) => {
    const link = ev.target.closest("a[href]");
    if (!link || !host.contains(link)) return;
    ev.preventDefault();
    openLink(link.href);
  });
  host.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && ev.target.matches("[role=button][data-onclick]")) ev.target.click();
  });
  host.addEventListener("change", (ev) => {
    const el = ev.target.closest("[data-onchange]");
    if (!el) return;
    runAction(JSON.parse(el.dataset.onchange), el.closest(".card") || host);
  });
  function showOverflow(anchor, items) {
    document.querySelectorAll(".overflow-menu").forEach((m) => m.remove());
    const menu = document.createElement("div");
    menu.className = "overflow-menu";
    for (const item of items) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "menu-item";
      button.textContent = item.text || "";
      button.dataset.onclick = JSON.stringify(item.onClick || {});
      menu.appendChild(button);
    }
    anchor.after(menu);
  }
  backButton.addEventListener("click", () => { if (stack.length > 1) { stack.pop(); showTop(); } });
  document.getElementById("reload").addEventListener("click", runTrigger);
  agentSelect.addEventListener("change", () => {
    state.agent = agentSelect.value;
    history.replaceState(null, "", pageUrl({agent: state.agent}));
    document.querySelectorAll("a[data-keep-agent]").forEach((a) => {
      const url = new URL(a.href);
      url.searchParams.set("agent", state.agent);
      a.href = url.pathname + url.search;
    });
    runTrigger();
  });
  const mailboxSelect = document.getElementById("mailbox");
  if (mailboxSelect) mailboxSelect.addEventListener("change", () => {
    location.assign(pageUrl({mailbox: mailboxSelect.value, thread: null, agent: state.agent}));
  });
  const reply = document.getElementById("reply");
  if (reply) reply.addEventListener("click", () => openDraft(true));
  const discard = document.getElementById("discard");
  if (discard) discard.addEventListener("click", closeDraft);

  runTrigger();
})();
"""

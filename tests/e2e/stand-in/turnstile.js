// A stand-in for Cloudflare's Turnstile widget (the `window.turnstile` API the page uses:
// render with sitekey, action and the three callbacks; reset), served ONLY by the end-to-end
// tests' local Siteverify fake (harness.mjs), never by Chamada. Its buttons let a test decide
// what happens: a token Siteverify will accept, one it will refuse, a failed challenge, an
// expired token. Tokens name the page's host and the action, so the fake answers as Cloudflare
// would for that widget.
'use strict';

(() => {
  const widgets = new Map();
  let next = 0;

  function draw(id) {
    const widget = widgets.get(id);
    const button = (label, onClick) => {
      const element = document.createElement('button');
      element.type = 'button';
      element.className = 'secondary';
      element.textContent = label;
      element.addEventListener('click', onClick);
      return element;
    };
    const token = (kind) => {
      widget.issued += 1;
      return `${kind}~${window.location.hostname}~${widget.options.action || ''}~${id}-${widget.issued}`;
    };
    const box = document.createElement('div');
    box.dataset.standIn = widget.options.sitekey;
    box.append(
      button('Pass the stand-in check', () => widget.options.callback(token('pass'))),
      button('Get a token Siteverify refuses', () => widget.options.callback(token('refused'))),
      button('Fail the stand-in check', () => widget.options['error-callback']()),
      button('Expire the stand-in token', () => widget.options['expired-callback']()),
    );
    widget.container.replaceChildren(box);
    widget.container.dataset.resets = String(widget.resets);
  }

  window.turnstile = {
    render(container, options) {
      const id = `stand-in-${next}`;
      next += 1;
      widgets.set(id, { container, options, issued: 0, resets: 0 });
      draw(id);
      return id;
    },
    reset(id) {
      const widget = widgets.get(id);
      if (!widget) return;
      widget.resets += 1;
      draw(id);
    },
    remove(id) {
      const widget = widgets.get(id);
      if (widget) widget.container.replaceChildren();
      widgets.delete(id);
    },
  };
})();

// Keyboard shortcuts for the review UI. A key presses the button marked data-key="<key>" on the
// page; j/k move through queue items and Enter opens the selected one. Keys typed into a form
// field are left alone.
(function () {
  "use strict";
  let selected = -1;

  function items() {
    return Array.from(document.querySelectorAll("li.item"));
  }

  function select(step) {
    const list = items();
    if (!list.length) return;
    selected = Math.max(0, Math.min(list.length - 1, selected + step));
    list.forEach((el, i) => el.classList.toggle("selected", i === selected));
    list[selected].scrollIntoView({block: "nearest"});
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, select, textarea")) return;
    if (event.key === "j") { select(1); return; }
    if (event.key === "k") { select(-1); return; }
    if (event.key === "Enter" && selected >= 0) {
      const item = items()[selected];
      if (item && item.dataset.href) window.location.assign(item.dataset.href);
      return;
    }
    const button = document.querySelector(`button[data-key="${CSS.escape(event.key)}"]`);
    if (button) {
      event.preventDefault();
      button.click();
    }
  });

  document.addEventListener("htmx:afterSwap", () => { selected = -1; });
})();

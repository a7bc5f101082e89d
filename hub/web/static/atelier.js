// The hub's own script (no inline script or handler: the Content-Security-Policy in
// deploy/nginx allows scripts from /static only). A field marked data-select-on-focus,
// such as a new API token, is selected whole when focused, ready to copy.
document.addEventListener("focusin", (event) => {
  const field = event.target;
  if (field instanceof HTMLInputElement && field.hasAttribute("data-select-on-focus")) {
    field.select();
  }
});

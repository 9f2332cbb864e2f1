//! The live release dashboard (`GET /` on the admin listener): its feed and
//! headers through real sockets, and the page itself in headless Chromium.

mod browser;
mod demo;
mod feed;
mod kit;
mod webdriver;

//! WeChat platform client: login, access token, content security, message push, deep links, subscribe messages.

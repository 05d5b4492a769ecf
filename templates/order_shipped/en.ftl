title = Your order shipped
body = { $count ->
    [one] One item is on its way, { $name }.
   *[other] { $count } items are on their way, { $name }.
}
